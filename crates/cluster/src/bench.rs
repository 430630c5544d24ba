//! Benchmark of the embedded API server: memory per stored object and list/watch latencies at
//! 1k and 10k Deployments plus 10k custom resources, over real HTTP (network I/O).
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use super::{ClusterConfig, Error, start};

/// What the benchmark measured at one size.
#[derive(Debug, Clone)]
pub struct SizeReport {
    /// Deployments stored.
    pub deployments: usize,
    /// Custom resources stored.
    pub custom: usize,
    /// Resident memory growth per stored object, in bytes.
    pub bytes_per_object: f64,
    /// Median time to list all Deployments (all namespaces).
    pub list_deployments: Duration,
    /// Median time to list all custom resources, when there are any.
    pub list_custom: Option<Duration>,
    /// Median time for a watch from `resourceVersion=0` to deliver every Deployment.
    pub watch_initial: Duration,
    /// Median time from a write to its watch event.
    pub watch_event: Duration,
}

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The cluster did not start.
    #[error("starting the cluster: {0}")]
    Start(#[from] Error),
    /// An HTTP request failed.
    #[error("request: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered with an error status.
    #[error("{0} answered {1}")]
    Status(String, u16),
    /// A watch ended early.
    #[error("watch ended after {0} events")]
    WatchEnded(usize),
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn deployment(i: usize) -> Value {
    let name = format!("bench-{i}");
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name, "bench": "yes"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "ghcr.io/example/app:1.0.0",
                    "ports": [{"containerPort": 8080, "name": "http"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}})
}

fn canary(i: usize) -> Value {
    json!({"apiVersion": "bench.serin.dev/v1", "kind": "Widget",
        "metadata": {"name": format!("widget-{i}"), "labels": {"bench": "yes"}},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": format!("bench-{i}")},
            "analysis": {"interval": "1m", "threshold": 5, "maxWeight": 50, "stepWeight": 10,
                "metrics": [{"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"}]}}})
}

const CRD: &str = r#"{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
 "metadata": {"name": "widgets.bench.serin.dev"},
 "spec": {"group": "bench.serin.dev", "scope": "Namespaced",
  "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
  "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
   "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}"#;

async fn create_all(
    http: &reqwest::Client,
    url: String,
    bodies: Vec<Value>,
) -> Result<(), BenchError> {
    futures::stream::iter(bodies.into_iter().map(|b| {
        let url = url.clone();
        async move {
            let r = http.post(&url).json(&b).send().await?;
            if !r.status().is_success() {
                return Err(BenchError::Status(url, r.status().as_u16()));
            }
            Ok(())
        }
    }))
    .buffer_unordered(16)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(())
}

async fn timed_get(
    http: &reqwest::Client,
    url: &str,
    rounds: usize,
) -> Result<Duration, BenchError> {
    let mut times = vec![];
    for _ in 0..rounds {
        let t = Instant::now();
        let r = http.get(url).send().await?;
        if !r.status().is_success() {
            return Err(BenchError::Status(url.to_string(), r.status().as_u16()));
        }
        let _ = r.bytes().await?;
        times.push(t.elapsed());
    }
    Ok(median(times))
}

async fn count_lines(mut resp: reqwest::Response, want: usize) -> Result<(), BenchError> {
    let mut seen = 0;
    while seen < want {
        match resp.chunk().await? {
            Some(chunk) => seen += chunk.iter().filter(|b| **b == b'\n').count(),
            None => return Err(BenchError::WatchEnded(seen)),
        }
    }
    Ok(())
}

/// Runs the benchmark at each Deployment count in `sizes` (custom resources match the largest),
/// printing figures as it goes.
pub async fn run(sizes: &[usize], custom: usize) -> Result<Vec<SizeReport>, BenchError> {
    let cluster = start(ClusterConfig {
        kubelet: false,
        ..Default::default()
    })
    .await?;
    let http = reqwest::Client::new();
    let base = cluster.url();
    let deploys = format!("{base}/apis/apps/v1/namespaces/default/deployments");
    let all_deploys = format!("{base}/apis/apps/v1/deployments");
    create_all(
        &http,
        format!("{base}/apis/apiextensions.k8s.io/v1/customresourcedefinitions"),
        vec![serde_json::from_str(CRD).unwrap_or_default()],
    )
    .await?;
    let widgets = format!("{base}/apis/bench.serin.dev/v1/namespaces/default/widgets");
    let mut reports = vec![];
    let mut have = 0;
    let mut have_custom = 0;
    let baseline = rss_bytes();
    let baseline_objects = cluster.object_count();
    for (step, &size) in sizes.iter().enumerate() {
        create_all(
            &http,
            deploys.clone(),
            (have..size).map(deployment).collect(),
        )
        .await?;
        have = size;
        if step + 1 == sizes.len() && custom > 0 {
            create_all(&http, widgets.clone(), (0..custom).map(canary).collect()).await?;
            have_custom = custom;
        }
        let objects = cluster.object_count() - baseline_objects;
        let bytes_per_object = rss_bytes().saturating_sub(baseline) as f64 / objects.max(1) as f64;
        let list_deployments = timed_get(&http, &all_deploys, 7).await?;
        let list_custom = if have_custom > 0 {
            Some(timed_get(&http, &format!("{base}/apis/bench.serin.dev/v1/widgets"), 7).await?)
        } else {
            None
        };
        let mut initial = vec![];
        for _ in 0..5 {
            let t = Instant::now();
            let r = http
                .get(format!("{all_deploys}?watch=true&resourceVersion=0"))
                .send()
                .await?;
            count_lines(r, have).await?;
            initial.push(t.elapsed());
        }
        let mut event = vec![];
        for i in 0..21 {
            let rv = cluster.resource_version();
            let r = http
                .get(format!("{all_deploys}?watch=true&resourceVersion={rv}"))
                .send()
                .await?;
            let t = Instant::now();
            let patch = json!({"metadata": {"annotations": {"bench/round": i.to_string()}}});
            let p = http
                .patch(format!("{deploys}/bench-0"))
                .header("content-type", "application/merge-patch+json")
                .body(patch.to_string())
                .send()
                .await?;
            if !p.status().is_success() {
                return Err(BenchError::Status("patch".into(), p.status().as_u16()));
            }
            count_lines(r, 1).await?;
            event.push(t.elapsed());
        }
        let report = SizeReport {
            deployments: have,
            custom: have_custom,
            bytes_per_object,
            list_deployments,
            list_custom,
            watch_initial: median(initial),
            watch_event: median(event),
        };
        println!(
            "{:>6} deployments + {:>6} custom resources: {:>7.0} B/object RSS; list deployments {:>9.2?}; list custom {}; watch from 0 (all deployments) {:>9.2?}; write-to-event {:>9.2?}",
            report.deployments,
            report.custom,
            report.bytes_per_object,
            report.list_deployments,
            report
                .list_custom
                .map_or("-".to_string(), |d| format!("{d:.2?}")),
            report.watch_initial,
            report.watch_event,
        );
        reports.push(report);
    }
    cluster.shutdown().await;
    Ok(reports)
}
