//! `serin query`: runs one metric of a Canary once against its real provider and prints the
//! rendered query, the value and the outcome; does I/O (files, Kubernetes API, metrics backends,
//! stdout).
use clap::{Args, ValueEnum};
use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::api::canary::CheckRecord;
use crate::api::{Canary, MetricTemplate};
use crate::metrics::{Analyzer, KubeObjects, MetricsChecker, Objects};

/// Arguments of `serin query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The Canary manifest (the first Canary of the file is used).
    #[arg(long, value_name = "FILE")]
    pub canary: PathBuf,
    /// The name of the metric in `spec.analysis.metrics`.
    #[arg(long)]
    pub metric: String,
    /// A file with the MetricTemplate(s) the metric's `templateRef` names.
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,
    /// A file with the Secret(s) a template's `secretRef` names.
    #[arg(long, value_name = "FILE")]
    pub secret: Option<PathBuf>,
    /// Read MetricTemplates and Secrets from this cluster instead of files.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The Prometheus used by builtin checks and templates without an address (the controller's
    /// --metrics-server).
    #[arg(long, default_value = "http://prometheus:9090")]
    pub metrics_server: String,
    /// Provider assumed for Canaries that do not set spec.provider (the controller's --mesh-provider).
    #[arg(long, default_value = "istio")]
    pub mesh_provider: String,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned `field: value` lines.
    Text,
    /// One JSON document.
    Json,
}

/// Why `serin query` could not run the check.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {0}: {1}")]
    Read(String, #[source] std::io::Error),
    /// A file is not the YAML expected.
    #[error("{0}: {1}")]
    Yaml(String, String),
    /// The canary file has no Canary.
    #[error("{0}: no Canary in the file")]
    NoCanary(String),
    /// The metric is not in the canary.
    #[error("the Canary has no metric {0:?}; it has: {1}")]
    NoMetric(String, String),
    /// The kubeconfig could not be used.
    #[error("kubeconfig {0}: {1}")]
    Kube(String, String),
    /// The analyzer could not be built.
    #[error("{0}")]
    Analyzer(String),
}

/// Runs `serin query` and returns its exit code: 0 Pass, 1 Fail or NoData, 2 Error.
pub fn run(args: QueryArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            crate::cli::output::stderr_line(&format!("serin query: cannot start the runtime: {e}"));
            return ExitCode::from(2);
        }
    };
    match rt.block_on(query(&args)) {
        Ok(report) => {
            // Output goes to a pipe that may be closed early (`| head`): write errors are ignored.
            let mut out = std::io::stdout().lock();
            let _ = match args.output {
                Output::Json => writeln!(out, "{}", report.json()),
                Output::Text => write!(out, "{}", report.text()),
            };
            let _ = out.flush();
            ExitCode::from(report.exit_code())
        }
        Err(e) => {
            crate::cli::output::stderr_line(&format!("serin query: {e}"));
            ExitCode::from(2)
        }
    }
}

/// What one run found.
#[derive(Debug, Clone)]
pub struct Report {
    /// `namespace/name` of the Canary.
    pub canary: String,
    /// The metric's name.
    pub metric: String,
    /// The provider type (`prometheus` for builtins and inline queries).
    pub provider: String,
    /// One record per query run (a builtin with a template runs both, as in Flagger).
    pub records: Vec<CheckRecord>,
}

impl Report {
    /// The worst outcome: Error, then Fail, NoData or InsufficientSample, then Pass.
    pub fn outcome(&self) -> &str {
        let has = |o: &str| self.records.iter().any(|r| r.outcome == o);
        if self.records.is_empty() || has("Error") {
            "Error"
        } else if has("Fail") {
            "Fail"
        } else if has("NoData") {
            "NoData"
        } else if has("InsufficientSample") {
            "InsufficientSample"
        } else {
            "Pass"
        }
    }

    /// 0 on Pass, 1 on Fail, NoData or InsufficientSample, 2 on Error.
    pub fn exit_code(&self) -> u8 {
        match self.outcome() {
            "Pass" => 0,
            "Error" => 2,
            _ => 1,
        }
    }

    /// The JSON document of `-o json`.
    pub fn json(&self) -> serde_json::Value {
        let checks: Vec<serde_json::Value> = self
            .records
            .iter()
            .map(|r| {
                serde_json::json!({
                    "query": r.query,
                    "value": r.value,
                    "min": r.min,
                    "max": r.max,
                    "outcome": r.outcome,
                    "message": r.message,
                })
            })
            .collect();
        serde_json::json!({
            "canary": self.canary,
            "metric": self.metric,
            "provider": self.provider,
            "outcome": self.outcome(),
            "checks": checks,
        })
    }

    /// The text of the default output.
    pub fn text(&self) -> String {
        let num = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        let mut s = format!(
            "canary:   {}\nmetric:   {}\nprovider: {}\n",
            self.canary, self.metric, self.provider
        );
        for r in &self.records {
            s.push_str(&format!(
                "query:    {}\nvalue:    {}\nrange:    min {}, max {}\noutcome:  {}\n",
                r.query.as_deref().unwrap_or("(not rendered)"),
                num(r.value),
                num(r.min),
                num(r.max),
                r.outcome
            ));
            if let Some(m) = &r.message {
                s.push_str(&format!("message:  {m}\n"));
            }
        }
        s
    }
}

/// MetricTemplates and Secrets read from files.
#[derive(Clone, Default)]
pub(crate) struct FileObjects {
    templates: Vec<MetricTemplate>,
    secrets: Vec<Secret>,
}

impl FileObjects {
    /// Objects read elsewhere (`serin replay` reads them from the cluster once).
    pub(crate) fn new(templates: Vec<MetricTemplate>, secrets: Vec<Secret>) -> Self {
        Self { templates, secrets }
    }

    /// The MetricTemplates and Secrets of the given files (none without a file).
    pub(crate) fn read(template: Option<&Path>, secret: Option<&Path>) -> Result<Self, Error> {
        let mut objects = Self::default();
        if let Some(t) = template {
            objects.templates = documents(t, "MetricTemplate")?;
        }
        if let Some(s) = secret {
            objects.secrets = documents(s, "Secret")?;
        }
        Ok(objects)
    }
}

/// A file's namespace matches when it names none.
fn matches(meta: &kube::api::ObjectMeta, namespace: &str, name: &str) -> bool {
    meta.name.as_deref() == Some(name)
        && meta
            .namespace
            .as_deref()
            .is_none_or(|n| n.is_empty() || n == namespace)
}

#[async_trait::async_trait]
impl Objects for FileObjects {
    async fn metric_template(&self, namespace: &str, name: &str) -> Result<MetricTemplate, String> {
        self.templates
            .iter()
            .find(|t| matches(&t.metadata, namespace, name))
            .cloned()
            .ok_or_else(|| {
                format!("no MetricTemplate {namespace}/{name} in the --template file (or no --template given)")
            })
    }

    async fn secret_data(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let s = self
            .secrets
            .iter()
            .find(|s| matches(&s.metadata, namespace, name))
            .ok_or_else(|| {
                format!("no Secret {namespace}/{name} in the --secret file (or no --secret given)")
            })?;
        let mut data: BTreeMap<String, Vec<u8>> = s
            .string_data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        for (k, v) in s.data.clone().unwrap_or_default() {
            data.insert(k, v.0);
        }
        Ok(data)
    }
}

/// Every document of `kind` in a YAML file.
pub(crate) fn documents<T: serde::de::DeserializeOwned>(
    path: &Path,
    kind: &str,
) -> Result<Vec<T>, Error> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| Error::Read(shown.clone(), e))?;
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let v = serde_json::Value::deserialize(doc)
            .map_err(|e| Error::Yaml(shown.clone(), e.to_string()))?;
        if v["kind"] == kind {
            out.push(
                serde_json::from_value(v).map_err(|e| Error::Yaml(shown.clone(), e.to_string()))?,
            );
        }
    }
    Ok(out)
}

/// The first Canary of a manifest file, in namespace `default` when it names none.
pub(super) fn first_canary(path: &std::path::Path) -> Result<Canary, Error> {
    let mut canary: Canary = documents(path, "Canary")?
        .into_iter()
        .next()
        .ok_or_else(|| Error::NoCanary(path.display().to_string()))?;
    if canary
        .metadata
        .namespace
        .as_deref()
        .is_none_or(str::is_empty)
    {
        canary.metadata.namespace = Some("default".into());
    }
    Ok(canary)
}

async fn query(args: &QueryArgs) -> Result<Report, Error> {
    let shown = args.canary.display().to_string();
    let canary = first_canary(&args.canary)?;
    let metric = canary
        .spec
        .metrics()
        .iter()
        .find(|m| m.name == args.metric)
        .cloned()
        .ok_or_else(|| {
            let names: Vec<&str> = canary
                .spec
                .metrics()
                .iter()
                .map(|m| m.name.as_str())
                .collect();
            Error::NoMetric(args.metric.clone(), names.join(", "))
        })?;
    // Only the chosen metric runs.
    let mut value =
        serde_json::to_value(&canary).map_err(|e| Error::Yaml(shown.clone(), e.to_string()))?;
    value["spec"]["analysis"]["metrics"] = serde_json::json!([metric]);
    let canary: Canary =
        serde_json::from_value(value).map_err(|e| Error::Yaml(shown.clone(), e.to_string()))?;
    let namespace = canary.metadata.namespace.clone().unwrap_or_default();
    let report = |provider: String, records: Vec<CheckRecord>| Report {
        canary: format!(
            "{namespace}/{}",
            canary.metadata.name.as_deref().unwrap_or_default()
        ),
        metric: metric.name.clone(),
        provider,
        records,
    };
    if let Some(path) = &args.kubeconfig {
        let shown = path.display().to_string();
        let kubeconfig = kube::config::Kubeconfig::read_from(path)
            .map_err(|e| Error::Kube(shown.clone(), e.to_string()))?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .map_err(|e| Error::Kube(shown.clone(), e.to_string()))?;
        crate::install_crypto_provider();
        let client = kube::Client::try_from(config)
            .map_err(|e| Error::Kube(shown.clone(), e.to_string()))?;
        let objects = KubeObjects(client.clone());
        let provider = provider_of(&objects, &canary, &metric).await;
        let analyzer = Analyzer::new(objects, &args.metrics_server, &args.mesh_provider)
            .map_err(|e| Error::Analyzer(e.to_string()))?
            .with_kube(client);
        return Ok(report(provider, analyzer.check(&canary).await.records));
    }
    let mut objects = FileObjects::default();
    if let Some(t) = &args.template {
        objects.templates = documents(t, "MetricTemplate")?;
    }
    if let Some(s) = &args.secret {
        objects.secrets = documents(s, "Secret")?;
    }
    let provider = provider_of(&objects, &canary, &metric).await;
    let analyzer = Analyzer::new(objects, &args.metrics_server, &args.mesh_provider)
        .map_err(|e| Error::Analyzer(e.to_string()))?;
    Ok(report(provider, analyzer.check(&canary).await.records))
}

/// The provider type the metric's template names (`prometheus` without a template).
async fn provider_of(
    objects: &impl Objects,
    canary: &Canary,
    metric: &crate::api::canary::CanaryMetric,
) -> String {
    let Some(r) = &metric.template_ref else {
        return "prometheus".into();
    };
    let ns = r
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| canary.metadata.namespace.clone())
        .unwrap_or_default();
    match objects.metric_template(&ns, &r.name).await {
        Ok(t) if t.spec.provider.type_.is_empty() => "prometheus".into(),
        Ok(t) => t.spec.provider.type_,
        Err(_) => "unknown (template not found)".into(),
    }
}
