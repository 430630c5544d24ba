//! End to end, one canary pair per metric provider: the real `serin controller` against the
//! embedded cluster promotes the canary whose MetricTemplate reads good values and rolls back the
//! one that reads bad values. The vendor APIs are local servers (tests/support/vendors.rs) that
//! check each vendor's credentials; Keptn and external metrics are served by the embedded cluster
//! itself. All twenty canaries run at once in one cluster.
mod common;

#[path = "support/vendors.rs"]
mod vendors;

use anyhow::Context;
use base64::Engine;
use common::e2e::{Env, NS, blue_green_canary, checks, deployment, eventually};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use serin::api::CanaryPhase;
use serin::install::authz::Grant;

/// Every provider family of Flagger's list but Prometheus (tests/metrics_e2e.rs).
fn providers() -> Vec<&'static str> {
    serin::metrics::registry::IMPLEMENTED
        .into_iter()
        .filter(|p| *p != "prometheus")
        .collect()
}

/// The threshold every canary's metric must stay under.
const MAX: f64 = 1.0;
const GOOD: f64 = 0.5;
const BAD: f64 = 5.0;

/// The external metric the externalmetrics canaries read.
const EXTERNAL_METRIC: &str = "errorrate";

/// The value the vendor servers answer: the query names the canary's target, whose name says
/// whether its values are good or bad.
fn value_of(query: &str) -> Option<f64> {
    if query.contains("-bad") {
        Some(BAD)
    } else if query.contains("-good") {
        Some(GOOD)
    } else {
        None
    }
}

/// A query in the provider's language that names the canary's target (as Flagger's examples
/// do, through the template's `target` helper).
fn query(provider: &str) -> String {
    match provider {
        "datadog" => "sum:trace.http.request.errors{service:{{ target }}}.as_rate()".into(),
        "newrelic" => "SELECT filter(count(*), WHERE httpResponseCode >= '500') * 100 / count(*) FROM Transaction WHERE appName = '{{ target }}'".into(),
        "graphite" => "target=summarize(asPercent(stats.{{ target }}.errors, stats.{{ target }}.requests), '1min', 'avg')&from=-1min".into(),
        "influxdb" => "from(bucket: \"default\")\n  |> range(start: -1m)\n  |> filter(fn: (r) => r.app == \"{{ target }}\")\n  |> mean()".into(),
        "dynatrace" => "builtin:service.errors.total.rate:filter(eq(\"dt.entity.service.name\",\"{{ target }}\")):avg".into(),
        "cloudwatch" => r#"[{"Id":"e1","Expression":"m1 * 100","Label":"ErrorRate"},
  {"Id":"m1","MetricStat":{"Metric":{"Namespace":"Serin","MetricName":"errors",
   "Dimensions":[{"Name":"app","Value":"{{ target }}"}]},"Period":60,"Stat":"Average"},"ReturnData":false}]"#.into(),
        "stackdriver" => "fetch k8s_container | metric 'custom.googleapis.com/error_rate' | filter resource.container_name == '{{ target }}' | within 1m".into(),
        "splunk" => "data('errors', filter=filter('app', '{{ target }}')).mean().publish()".into(),
        "keptn" => "keptnmetric/{{ namespace }}/{{ target }}".into(),
        "externalmetrics" => format!("{{{{ namespace }}}}/{EXTERNAL_METRIC}?labelSelector=canary%3D{{{{ target }}}}"),
        other => panic!("no query for {other}"),
    }
}

fn template(provider: &str, base: &str) -> Value {
    let mut spec = json!({"type": provider});
    if vendors::HTTP_VENDORS.contains(&provider) {
        spec["address"] = json!(base);
    }
    if vendors::vendor_secret(provider, base).is_some() {
        spec["secretRef"] = json!({"name": format!("{provider}-creds")});
    }
    if provider == "cloudwatch" {
        spec["region"] = json!("eu-west-1");
    }
    json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate",
        "metadata": {"name": provider, "namespace": NS},
        "spec": {"provider": spec, "query": query(provider)}
    })
}

fn secret(name: &str, pairs: &[(&str, String)]) -> Value {
    let data: serde_json::Map<String, Value> = pairs
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                json!(base64::engine::general_purpose::STANDARD.encode(v)),
            )
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": NS}, "data": data})
}

/// A blue/green canary (kubernetes provider) of two 1 s iterations, gated by the provider's
/// template only.
fn canary(name: &str, provider: &str) -> Value {
    blue_green_canary(name, 60)
        .metric(json!({"name": "error-rate", "interval": "1m",
            "templateRef": {"name": provider}, "thresholdRange": {"max": MAX}}))
        .json()
}

fn dynamic(
    client: &kube::Client,
    api_version: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    Api::namespaced_with(
        client.clone(),
        NS,
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk(group, version, kind),
            plural,
        ),
    )
}

/// Keptn's KeptnMetric CRD and the external metric, served by the embedded cluster, with the
/// values of the good and bad canaries.
async fn kubernetes_metrics(env: &Env) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    for crd in [
        vendors::keptn_crd("KeptnMetric", "keptnmetrics"),
        vendors::external_metric_crd(EXTERNAL_METRIC),
    ] {
        crds.create(&PostParams::default(), &serde_json::from_value(crd)?)
            .await
            .context("creating a CRD")?;
    }
    let keptn = dynamic(
        &env.client,
        "metrics.keptn.sh/v1beta1",
        "KeptnMetric",
        "keptnmetrics",
    );
    let external = dynamic(
        &env.client,
        "external.metrics.k8s.io/v1beta1",
        "ExternalMetricValue",
        EXTERNAL_METRIC,
    );
    eventually(
        10,
        "the KeptnMetric and external metric kinds to be served",
        || async {
            Ok((keptn.list(&ListParams::default()).await.is_ok()
                && external.list(&ListParams::default()).await.is_ok())
            .then_some(()))
        },
    )
    .await?;
    for (suffix, value) in [("good", GOOD), ("bad", BAD)] {
        let name = format!("keptn-{suffix}");
        keptn
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "metrics.keptn.sh/v1beta1", "kind": "KeptnMetric",
                    "metadata": {"name": name, "namespace": NS},
                    "spec": {"provider": {"name": "my-prometheus"}, "query": "sum(errors)",
                        "fetchIntervalSeconds": 10}
                }))?,
            )
            .await?;
        // Keptn's metrics operator writes the value through the status subresource.
        keptn
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"value": value.to_string(),
                    "rawValue": base64::engine::general_purpose::STANDARD.encode(value.to_string()),
                    "lastUpdated": "2024-03-01T12:30:00Z"}})),
            )
            .await?;
        // A quantity, as adapters write them (500m for 0.5).
        let quantity = format!("{}m", (value * 1000.0) as i64);
        let target = format!("externalmetrics-{suffix}");
        external
            .create(
                &PostParams::default(),
                &serde_json::from_value(vendors::external_metric_value(
                    EXTERNAL_METRIC,
                    NS,
                    &target,
                    json!({"canary": target}),
                    &quantity,
                ))?,
            )
            .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_promotes_a_canary_with_good_values_and_rolls_back_one_with_bad_values()
-> anyhow::Result<()> {
    let api = vendors::vendor_api(value_of).await;
    let mut env = Env::start("metrics-providers").await?;
    // The bundle grants no wildcard, so docs/metrics.md asks users to grant the external metrics
    // their templates read; this is that grant.
    env.user_grants.push(Grant {
        namespace: None,
        rules: vec![serde_json::from_value(json!({
            "apiGroups": ["external.metrics.k8s.io"],
            "resources": [EXTERNAL_METRIC],
            "verbs": ["list"]
        }))?],
    });
    kubernetes_metrics(&env).await?;
    let providers = providers();
    assert_eq!(providers.len(), 10, "{providers:?}");
    for provider in &providers {
        if let Some(pairs) = vendors::vendor_secret(provider, &api.base) {
            env.apply(secret(&format!("{provider}-creds"), &pairs))
                .await?;
        }
        env.apply(template(provider, &api.base)).await?;
    }
    // CloudWatch reads its keys from the controller's environment, as Flagger does.
    let mut controller = env.controller_command("controller", 0)?;
    controller.envs(vendors::aws_env());
    env.controller = Some(controller.spawn()?);

    let names: Vec<(String, &str, f64)> = providers
        .iter()
        .flat_map(|p| {
            [
                (format!("{p}-good"), *p, GOOD),
                (format!("{p}-bad"), *p, BAD),
            ]
        })
        .collect();
    for (name, provider, _) in &names {
        env.apply(deployment(name, "podinfo:1.0.0")).await?;
        env.apply(canary(name, provider)).await?;
    }
    for (name, _, _) in &names {
        env.wait_phase(name, CanaryPhase::Initialized, 60).await?;
    }
    for (name, _, _) in &names {
        env.apply(deployment(name, "podinfo:2.0.0")).await?;
    }

    for (name, provider, value) in &names {
        let good = *value == GOOD;
        let phase = if good {
            CanaryPhase::Succeeded
        } else {
            CanaryPhase::Failed
        };
        let done = env.wait_phase(name, phase, 60).await?;
        let record = checks(&done)
            .into_iter()
            .find(|r| r.name == "error-rate")
            .with_context(|| format!("{name}: no error-rate check in {:?}", done.status))?;
        assert_eq!(
            (record.outcome.as_str(), record.value),
            (if good { "Pass" } else { "Fail" }, Some(*value)),
            "{provider} {name}: {record:?}"
        );
        assert!(
            record
                .query
                .as_deref()
                .is_some_and(|q| q.contains(name.as_str())),
            "{name}: the rendered query names the target: {record:?}"
        );
        let primary = env.deployment(&format!("{name}-primary")).await?;
        let image = common::e2e::image_of(&primary);
        let want = if good {
            "podinfo:2.0.0"
        } else {
            "podinfo:1.0.0"
        };
        assert_eq!(image.as_deref(), Some(want), "{name}: primary image");
    }

    // Every vendor was asked, always with the credentials of its Secret (or the environment).
    let requests = api.requests();
    for vendor in vendors::HTTP_VENDORS {
        let asked: Vec<_> = requests
            .iter()
            .filter(|r| vendors::vendor_query(r).is_some_and(|(v, _)| v == vendor))
            .collect();
        assert!(!asked.is_empty(), "{vendor} was never queried");
        assert!(
            asked.iter().all(|r| vendors::authorized(vendor, r)),
            "{vendor}: a request without the right credentials"
        );
    }
    Ok(())
}
