//! The Keptn metrics provider: reads a `KeptnMetric`'s value, or runs a Keptn `Analysis` and
//! reads its verdict, through the Kubernetes API (`metrics.keptn.sh/v1beta1`); network I/O.
//!
//! Like Flagger's, the query is `<keptnmetric|analysis>/<namespace>/<name>[/<duration>[/<args>]]`
//! (lower-cased as a whole, kinds singular or plural). A KeptnMetric answers its
//! `status.value`; an Analysis named after the AnalysisDefinition `<name>` is created with
//! `timeframe.recent` = `<duration>` (default `1m`) and `args` from `k=v;k=v`, polled every second
//! for up to 10 s until `status.state` is `Completed`, read as 1 (`status.pass`) or 0, then
//! deleted. Unlike Flagger, a KeptnMetric without a value yet is no data (Flagger: an error).
use std::time::Duration;

use async_trait::async_trait;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Map, Value, json};

use super::evaluate::Reading;
use super::provider::{Provider, ProviderConfig, QueryContext};
use crate::core::text::error_chain;

const NAME: &str = "keptn";
/// Keptn's metrics API group.
pub const GROUP: &str = "metrics.keptn.sh";
/// The version Flagger reads.
pub const VERSION: &str = "v1beta1";
/// How long an Analysis may take (Flagger's).
const ANALYSIS_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an Analysis is polled.
const POLL: Duration = Duration::from_secs(1);

/// Why a Keptn provider cannot be built (it cannot fail today; kept for the factory's shape).
#[derive(Debug, thiserror::Error)]
pub enum Error {}

/// What a query asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Read `status.value` of a KeptnMetric.
    Metric {
        /// Namespace.
        namespace: String,
        /// KeptnMetric name.
        name: String,
    },
    /// Run an Analysis of an AnalysisDefinition.
    Analysis {
        /// Namespace.
        namespace: String,
        /// AnalysisDefinition name.
        definition: String,
        /// `timeframe.recent`.
        duration: String,
        /// `args`.
        args: Vec<(String, String)>,
    },
}

/// Parses a query as Flagger does (lower-cased, trimmed).
pub fn parse_query(query: &str) -> Result<Query, String> {
    let q = query.trim().to_lowercase();
    let parts: Vec<&str> = q.split('/').collect();
    if parts.len() < 3 {
        return Err(format!(
            "{NAME}: unexpected query format; expected <keptnmetric|analysis>/<namespace>/<resourceName>/<duration>/<arguments>, got {query:?}"
        ));
    }
    let (namespace, name) = (parts[1].to_string(), parts[2].to_string());
    match parts[0] {
        "keptnmetric" | "keptnmetrics" => Ok(Query::Metric { namespace, name }),
        "analysis" | "analyses" => Ok(Query::Analysis {
            namespace,
            definition: name,
            duration: parts.get(3).map_or("1m", |d| *d).to_string(),
            args: parts
                .get(4)
                .map(|a| {
                    a.split(';')
                        .filter_map(|kv| {
                            let kv: Vec<&str> = kv.split('=').collect();
                            (kv.len() == 2).then(|| (kv[0].to_string(), kv[1].to_string()))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }),
        other => Err(format!(
            "{NAME}: unexpected resource kind {other:?} in the query; must be one of keptnmetric, analysis"
        )),
    }
}

/// Reads KeptnMetrics and runs Analyses.
#[derive(Clone)]
pub struct Keptn {
    client: kube::Client,
    analysis_timeout: Duration,
}

impl std::fmt::Debug for Keptn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keptn")
    }
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, kind), plural)
}

impl Keptn {
    /// Uses the operator's client (Keptn's resources live in the cluster; the template's address
    /// and Secret are not used, as in Flagger).
    pub fn new(_config: &ProviderConfig, client: kube::Client) -> Result<Self, Error> {
        Ok(Self {
            client,
            analysis_timeout: ANALYSIS_TIMEOUT,
        })
    }

    /// Changes how long an Analysis may take (Flagger's 10 s by default).
    pub fn with_analysis_timeout(mut self, timeout: Duration) -> Self {
        self.analysis_timeout = timeout;
        self
    }

    async fn run(&self, query: &str) -> Result<Reading, String> {
        match parse_query(query)? {
            Query::Metric { namespace, name } => self.metric(&namespace, &name).await,
            Query::Analysis {
                namespace,
                definition,
                duration,
                args,
            } => {
                self.analysis(&namespace, &definition, &duration, &args)
                    .await
            }
        }
    }

    async fn metric(&self, namespace: &str, name: &str) -> Result<Reading, String> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            namespace,
            &resource("KeptnMetric", "keptnmetrics"),
        );
        let obj = api.get(name).await.map_err(|e| {
            format!(
                "{NAME}: could not read KeptnMetric {namespace}/{name}: {}",
                error_chain(&e)
            )
        })?;
        match obj.data.pointer("/status/value") {
            None | Some(Value::Null) => Ok(Reading::Empty),
            Some(Value::String(s)) if s.is_empty() => Ok(Reading::Empty),
            Some(Value::String(s)) => s.trim().parse::<f64>().map(Reading::Value).map_err(|e| {
                format!(
                    "{NAME}: the value {s:?} of KeptnMetric {namespace}/{name} is not a number: {e}"
                )
            }),
            Some(other) => Err(format!(
                "{NAME}: the value of KeptnMetric {namespace}/{name} is not a string: {other}"
            )),
        }
    }

    async fn analysis(
        &self,
        namespace: &str,
        definition: &str,
        duration: &str,
        args: &[(String, String)],
    ) -> Result<Reading, String> {
        let ar = resource("Analysis", "analyses");
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &ar);
        let args: Map<String, Value> = args
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let mut obj = DynamicObject::new("", &ar).within(namespace);
        obj.metadata.name = None;
        obj.metadata.generate_name = Some(format!("{definition}-"));
        obj.data = json!({
            "spec": {
                "analysisDefinition": { "name": definition },
                "timeframe": { "recent": duration },
                "args": args,
            }
        });
        let created = tokio::time::timeout(
            self.analysis_timeout,
            api.create(&PostParams::default(), &obj),
        )
        .await
        .map_err(|_| format!("{NAME}: creating an Analysis of {namespace}/{definition} timed out"))?
        .map_err(|e| {
            format!(
                "{NAME}: could not create a Keptn Analysis of {namespace}/{definition}: {}",
                error_chain(&e)
            )
        })?;
        let name = created.metadata.name.clone().unwrap_or_default();
        let verdict = tokio::time::timeout(self.analysis_timeout, async {
            loop {
                tokio::time::sleep(POLL).await;
                let got = api.get(&name).await.map_err(|e| {
                    format!(
                        "{NAME}: could not read the status of Analysis {namespace}/{name}: {}",
                        error_chain(&e)
                    )
                })?;
                if got.data.pointer("/status/state").and_then(Value::as_str) == Some("Completed")
                    && let Some(pass) = got.data.pointer("/status/pass").and_then(Value::as_bool)
                {
                    return Ok(Reading::Value(if pass { 1.0 } else { 0.0 }));
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "{NAME}: timed out after {}s waiting for Keptn Analysis {namespace}/{name} to complete",
                self.analysis_timeout.as_secs()
            ))
        });
        if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
            tracing::warn!(analysis = %name, namespace, "could not delete the Keptn Analysis: {}", error_chain(&e));
        }
        verdict
    }
}

#[async_trait]
impl Provider for Keptn {
    async fn query(&self, query: &str, _ctx: &QueryContext) -> Reading {
        self.run(query).await.unwrap_or_else(Reading::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_name_a_kind_a_namespace_and_a_resource() {
        assert_eq!(
            parse_query("KeptnMetric/Prod/Error-Rate\n"),
            Ok(Query::Metric {
                namespace: "prod".into(),
                name: "error-rate".into()
            })
        );
        assert_eq!(
            parse_query("keptnmetrics/prod/x").map(|q| matches!(q, Query::Metric { .. })),
            Ok(true)
        );
        assert_eq!(
            parse_query("analysis/prod/slo/5m/service=podinfo;stage=canary;bad"),
            Ok(Query::Analysis {
                namespace: "prod".into(),
                definition: "slo".into(),
                duration: "5m".into(),
                args: vec![
                    ("service".into(), "podinfo".into()),
                    ("stage".into(), "canary".into())
                ],
            })
        );
        assert_eq!(
            parse_query("analyses/prod/slo").map(|q| match q {
                Query::Analysis { duration, args, .. } => (duration, args.len()),
                _ => (String::new(), 9),
            }),
            Ok(("1m".into(), 0))
        );
        assert!(parse_query("keptnmetric/prod").is_err());
        assert!(parse_query("deployment/prod/x").is_err());
    }
}
