//! `serin bench`: runs the real `serin controller` binary against the embedded cluster with
//! instant workloads and measures its footprint and punctuality at N canaries (network, process
//! and file I/O). The figures' arithmetic lives in [`stats`] (pure).
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::{WatchStreamExt, watcher};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::api::{Canary, CanaryPhase};
use crate::cluster::sim::{self, SimConfig};
use crate::cluster::{ClusterConfig, ClusterHandle};

pub mod stats;

/// The namespace the benchmark's objects live in.
pub const NAMESPACE: &str = "bench";
/// The User-Agent prefix of the controller's requests (`serin-controller/<version>`).
pub const CONTROLLER_UA: &str = "serin-controller/";
/// How many intervals the idle measurement lasts.
pub const IDLE_INTERVALS: u32 = 10;
const GATEWAY_API_CRDS: &str = include_str!("../demo/gateway-api-crds.yaml");
/// How many creates and patches the benchmark has in flight at once.
const CONCURRENCY: usize = 32;

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The embedded cluster did not start.
    #[error("cannot start the embedded cluster: {0}")]
    Cluster(#[source] sim::Error),
    /// No client for the embedded cluster.
    #[error("cannot build a client for the embedded cluster: {0}")]
    Client(#[source] crate::cluster::Error),
    /// An API call of the benchmark itself failed.
    #[error("{0}: {1}")]
    Api(&'static str, #[source] kube::Error),
    /// A file (kubeconfig, log) could not be written.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// The controller process could not be started or stopped early.
    #[error("the controller {0} (log: {1})")]
    Controller(String, PathBuf),
    /// A generated manifest did not deserialize (a bug in the benchmark).
    #[error("building a manifest: {0}")]
    Manifest(String),
    /// The canaries did not get where they should in time.
    #[error("{0} (controller log: {1})")]
    Timeout(String, PathBuf),
}

/// The traffic provider the canaries use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum BenchProvider {
    /// Blue/green on plain Kubernetes Services: `steps` iterations.
    #[value(name = "kubernetes")]
    #[serde(rename = "kubernetes")]
    Kubernetes,
    /// Weighted HTTPRoutes: `steps` weight increases.
    #[value(name = "gatewayapi:v1")]
    #[serde(rename = "gatewayapi:v1")]
    GatewayApiV1,
}

impl BenchProvider {
    /// The provider name as the Canary spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kubernetes => "kubernetes",
            Self::GatewayApiV1 => "gatewayapi:v1",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Canary counts, one run each.
    pub sizes: Vec<usize>,
    /// The analysis interval of every canary.
    pub interval: Duration,
    /// Traffic steps per rollout (iterations for blue/green, weight increases otherwise).
    pub steps: u32,
    /// The traffic provider.
    pub provider: BenchProvider,
    /// The `serin` binary to run as `serin controller`.
    pub controller_exe: PathBuf,
}

/// Figures of one run at one size.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Run {
    /// Canaries.
    pub canaries: usize,
    /// Traffic provider.
    pub provider: BenchProvider,
    /// Analysis interval in seconds.
    pub interval_secs: f64,
    /// Traffic steps per rollout.
    pub steps: u32,
    /// From the first create to every canary Initialized, seconds.
    pub init_secs: f64,
    /// Successful controller writes per canary from start to every canary Initialized.
    pub init_writes_per_canary: f64,
    /// Successful controller writes of the initialisation by `verb resource`.
    pub init_writes_by_resource: BTreeMap<String, u64>,
    /// Requests the controller made while every canary was idle, over `idle_secs`.
    pub idle_requests: u64,
    /// How long the idle measurement lasted, seconds.
    pub idle_secs: f64,
    /// From the first revision change to every canary Succeeded, seconds.
    pub rollout_secs: f64,
    /// `steps × interval`, seconds.
    pub ideal_secs: f64,
    /// `rollout_secs / ideal_secs`.
    pub rollout_ratio: f64,
    /// `rollout_secs / ((steps + 1) × interval)`: the wall time against the plan's own schedule,
    /// which, as Flagger's, starts the analysis one interval after it detects the revision and
    /// promotes one interval after the last step (so a perfectly punctual controller reads 1.0
    /// here and `(steps + 1) / steps` in `rollout_ratio`). A second figure beside the issue's
    /// ratio, not a replacement for it.
    #[serde(default)]
    pub schedule_ratio: f64,
    /// Canaries that did not succeed (Failed, or still running at the deadline).
    pub not_succeeded: usize,
    /// Analysis tick lag, median, milliseconds (from the controller's histogram).
    pub tick_lag_p50_ms: Option<f64>,
    /// Analysis tick lag, 99th percentile, milliseconds.
    pub tick_lag_p99_ms: Option<f64>,
    /// Analysis ticks measured.
    pub tick_lag_samples: u64,
    /// Successful controller writes per canary over the whole rollout.
    pub writes_per_canary: f64,
    /// Successful controller writes per canary per traffic step, counted between each canary's
    /// first and last step (`None` with a single step).
    pub writes_per_step: Option<f64>,
    /// Successful controller writes during the rollout by `verb resource`.
    pub writes_by_resource: BTreeMap<String, u64>,
    /// Writes the API refused during the rollout (conflicts and the like).
    pub refused_writes: u64,
    /// Controller resident memory after the idle measurement, MiB.
    pub rss_rest_mib: f64,
    /// Peak controller resident memory during the whole run, MiB.
    pub rss_peak_mib: f64,
    /// The controller's live heap at rest, MiB: only from a `--features heap-stats` build,
    /// whose counting allocator exports it (`serin_heap_live_bytes`). RSS minus this is the
    /// allocator's retained memory plus the code, stacks and runtime.
    #[serde(default)]
    pub heap_rest_mib: Option<f64>,
}

/// A whole `serin bench` result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// CPUs available to this process.
    pub cpus: usize,
    /// `/proc/loadavg` (1, 5, 15 minutes) when the benchmark started.
    pub load_before: Vec<f64>,
    /// `/proc/loadavg` when it ended.
    pub load_after: Vec<f64>,
    /// One entry per size.
    pub runs: Vec<Run>,
}

/// Runs every size in turn; `progress` receives one line per phase.
pub async fn run(opts: &Options, progress: &(dyn Fn(&str) + Sync)) -> Result<Report, Error> {
    let load_before = load_average();
    let mut runs = Vec::new();
    for &n in &opts.sizes {
        runs.push(run_one(opts, n, progress).await?);
    }
    Ok(Report {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_before,
        load_after: load_average(),
        runs,
    })
}

fn load_average() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// Resident memory of a process in bytes (`VmRSS` of `/proc/PID/status`); 0 when unknown.
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// `2s`, `500ms`: the interval as a Flagger duration.
fn go_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn ar(api_version: &str, kind: &str) -> ApiResource {
    let (g, v) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk(&GroupVersionKind::gvk(g, v, kind))
}

fn http_route() -> ApiResource {
    ar("gateway.networking.k8s.io/v1", "HTTPRoute")
}

/// The weights of one step and the last, for weighted providers.
fn step_weight(steps: u32) -> i64 {
    i64::from(100 / (steps + 1)).max(1)
}

fn deployment(i: usize, image: &str) -> Value {
    let name = format!("app-{i}");
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": name}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image,
                    "ports": [{"name": "http", "containerPort": 8080}]}]}}}})
}

fn canary(i: usize, opts: &Options) -> Value {
    let name = format!("app-{i}");
    let interval = go_duration(opts.interval);
    let (service, analysis) = match opts.provider {
        BenchProvider::Kubernetes => (
            json!({"port": 80, "targetPort": 8080}),
            json!({"interval": interval, "threshold": 2, "iterations": opts.steps}),
        ),
        BenchProvider::GatewayApiV1 => (
            json!({"port": 80, "targetPort": 8080,
                "gatewayRefs": [{"name": "bench", "namespace": NAMESPACE}]}),
            json!({"interval": interval, "threshold": 2,
                "stepWeight": step_weight(opts.steps),
                "maxWeight": step_weight(opts.steps) * i64::from(opts.steps)}),
        ),
    };
    json!({"apiVersion": "flagger.app/v1beta1", "kind": "Canary",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"provider": opts.provider.as_str(),
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "progressDeadlineSeconds": 600,
            "service": service, "analysis": analysis}})
}

/// What the benchmark's Canary watch saw of one canary.
#[derive(Debug, Default, Clone)]
struct Track {
    phase: Option<CanaryPhase>,
    /// When the first traffic step of the rollout was seen.
    first_step: Option<DateTime<Utc>>,
    /// When the last traffic step of the rollout was seen.
    last_step: Option<DateTime<Utc>>,
}

type Tracks = Arc<Mutex<HashMap<String, Track>>>;

fn lock(t: &Tracks) -> std::sync::MutexGuard<'_, HashMap<String, Track>> {
    t.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Follows every Canary's phase and the times of its first and last traffic steps.
fn watch_canaries(
    client: kube::Client,
    opts: &Options,
    tracks: Tracks,
) -> tokio::task::JoinHandle<()> {
    let api: Api<Canary> = Api::namespaced(client, NAMESPACE);
    let (provider, steps) = (opts.provider, i64::from(opts.steps));
    tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            let objs = match ev {
                Ok(watcher::Event::Apply(c) | watcher::Event::InitApply(c)) => vec![c],
                _ => continue,
            };
            let now = Utc::now();
            let mut tracks = lock(&tracks);
            for c in objs {
                let name = c.metadata.name.clone().unwrap_or_default();
                let status = c.status.unwrap_or_default();
                let t = tracks.entry(name).or_default();
                t.phase = status.phase;
                let step = match provider {
                    BenchProvider::Kubernetes => i64::from(status.iterations),
                    BenchProvider::GatewayApiV1 => {
                        i64::from(status.canary_weight) / step_weight(steps as u32)
                    }
                };
                if status.phase == Some(CanaryPhase::Progressing) {
                    if step >= 1 && t.first_step.is_none() {
                        t.first_step = Some(now);
                    }
                    if step >= steps && t.last_step.is_none() {
                        t.last_step = Some(now);
                    }
                }
            }
        }
    })
}

/// Accepts every HTTPRoute for its parents, as a Gateway controller would (the router waits for
/// the parent to accept the current generation before it shifts traffic).
fn accept_routes(client: kube::Client) -> tokio::task::JoinHandle<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(client, NAMESPACE, &http_route());
    tokio::spawn(async move {
        let stream = watcher(api.clone(), watcher::Config::default()).default_backoff();
        let stream = stream.filter_map(|ev| async move {
            match ev {
                Ok(watcher::Event::Apply(r) | watcher::Event::InitApply(r)) => Some(r),
                _ => None,
            }
        });
        stream
            .for_each_concurrent(CONCURRENCY, |r| {
                let api = api.clone();
                async move {
                    let v = serde_json::to_value(&r).unwrap_or_default();
                    let generation = v["metadata"]["generation"].as_i64().unwrap_or(0);
                    let parents: Vec<Value> = v["spec"]["parentRefs"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|p| json!({"parentRef": p, "controllerName": "serin.dev/bench-gateway",
                            "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                                "message": "Accepted by the benchmark's stand-in gateway",
                                "observedGeneration": generation,
                                "lastTransitionTime": "2026-01-01T00:00:00Z"}]}))
                        .collect();
                    if v["status"]["parents"] != json!(parents) {
                        let name = v["metadata"]["name"].as_str().unwrap_or_default();
                        let patch = json!({"status": {"parents": parents}});
                        if let Err(e) = api
                            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await
                        {
                            tracing::debug!(route = name, error = %e, "cannot accept route");
                        }
                    }
                }
            })
            .await;
    })
}

/// The controller process: killed when dropped.
struct ControllerProcess {
    child: Child,
    log: PathBuf,
    metrics: String,
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ControllerProcess {
    fn start(opts: &Options, kubeconfig: &Path, dir: &Path) -> Result<Self, Error> {
        let log = dir.join("controller.log");
        let file =
            std::fs::File::create(&log).map_err(|e| Error::Io(log.display().to_string(), e))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| Error::Io("picking a port".into(), e))?
            .port();
        let child = Command::new(&opts.controller_exe)
            .arg("controller")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg(format!("-mesh-provider={}", opts.provider.as_str()))
            .args(["--min-interval", &opts.interval.as_secs_f64().to_string()])
            .args(["--port", &port.to_string()])
            .args(["--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|e| Error::Controller(format!("did not start: {e}"), log.clone()))?;
        Ok(Self {
            child,
            log,
            metrics: format!("http://127.0.0.1:{port}/metrics"),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn check_alive(&mut self) -> Result<(), Error> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(Error::Controller(
                format!("exited: {status}"),
                self.log.clone(),
            )),
            _ => Ok(()),
        }
    }

    async fn scrape(&self, http: &reqwest::Client) -> Option<String> {
        http.get(&self.metrics).send().await.ok()?.text().await.ok()
    }
}

/// Samples a process's resident memory every 100 ms and keeps the peak.
struct RssSampler {
    peak: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let p = peak.clone();
        let task = tokio::spawn(async move {
            loop {
                p.fetch_max(rss_bytes(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { peak, task }
    }

    fn peak(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn create_all(
    client: &kube::Client,
    objects: Vec<Value>,
    what: &'static str,
) -> Result<(), Error> {
    futures::stream::iter(objects.into_iter().map(|obj| {
        let client = client.clone();
        async move {
            let api: Api<DynamicObject> = Api::namespaced_with(
                client,
                NAMESPACE,
                &ar(
                    obj["apiVersion"].as_str().unwrap_or_default(),
                    obj["kind"].as_str().unwrap_or_default(),
                ),
            );
            let obj: DynamicObject =
                serde_json::from_value(obj).map_err(|e| Error::Manifest(e.to_string()))?;
            api.create(&PostParams::default(), &obj)
                .await
                .map_err(|e| Error::Api(what, e))?;
            Ok::<(), Error>(())
        }
    }))
    .buffer_unordered(CONCURRENCY)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(())
}

async fn install(client: &kube::Client, provider: BenchProvider) -> Result<(), Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut all = crate::api::crd::all();
    if provider == BenchProvider::GatewayApiV1 {
        for doc in serde_yaml_ng::Deserializer::from_str(GATEWAY_API_CRDS) {
            let crd = CustomResourceDefinition::deserialize(doc)
                .map_err(|e| Error::Manifest(e.to_string()))?;
            all.push(crd);
        }
    }
    for crd in &all {
        crds.create(&PostParams::default(), crd)
            .await
            .map_err(|e| Error::Api("creating a CRD", e))?;
    }
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))
        .map_err(|e| Error::Manifest(e.to_string()))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .map_err(|e| Error::Api("creating the namespace", e))?;
    let canaries: Api<Canary> = Api::namespaced(client.clone(), NAMESPACE);
    let deadline = Instant::now() + Duration::from_secs(10);
    while canaries.list(&Default::default()).await.is_err() {
        if Instant::now() > deadline {
            return Err(Error::Manifest("the Canary CRD is not served".into()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Waits until `done` holds for every tracked canary (and there are `n`), or `timeout` passes.
async fn wait_all(
    tracks: &Tracks,
    n: usize,
    timeout: Duration,
    controller: &mut ControllerProcess,
    done: impl Fn(&Track) -> bool,
    what: &str,
) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    loop {
        let (count, reached) = {
            let t = lock(tracks);
            (t.len(), t.values().filter(|t| done(t)).count())
        };
        if count >= n && reached >= n {
            return Ok(());
        }
        controller.check_alive()?;
        if Instant::now() > deadline {
            return Err(Error::Timeout(
                format!("only {reached} of {n} canaries {what} within {timeout:?}"),
                controller.log.clone(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn controller_requests(cluster: &ClusterHandle) -> u64 {
    cluster
        .requests()
        .snapshot()
        .iter()
        .filter(|c| c.key.user_agent.starts_with(CONTROLLER_UA))
        .map(|c| c.count)
        .sum()
}

const MIB: f64 = 1024.0 * 1024.0;

/// The controller's successful writes by `verb resource`.
fn by_resource(writes: &[crate::cluster::WriteRecord]) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for w in writes
        .iter()
        .filter(|w| w.key.user_agent.starts_with(CONTROLLER_UA) && w.succeeded())
    {
        *out.entry(format!("{} {}", w.key.verb, w.key.resource))
            .or_insert(0u64) += 1;
    }
    out
}

async fn run_one(opts: &Options, n: usize, progress: &(dyn Fn(&str) + Sync)) -> Result<Run, Error> {
    let sims = SimConfig {
        instant: true,
        daemonsets: false,
        hpa: false,
        endpoints: false,
        kubelet: false,
        ..SimConfig::default()
    };
    let (cluster, sims) = sim::start_cluster(
        ClusterConfig {
            nodes: 1,
            watch_history: (n * 20).max(10_000),
            ..ClusterConfig::default()
        },
        sims,
    )
    .await
    .map_err(Error::Cluster)?;
    let client = cluster.client().map_err(Error::Client)?;
    let dir = std::env::temp_dir().join(format!("serin-bench-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::Io(dir.display().to_string(), e))?;
    let kubeconfig = dir.join("kubeconfig");
    cluster
        .write_kubeconfig(&kubeconfig)
        .map_err(Error::Client)?;
    install(&client, opts.provider).await?;
    let tracks: Tracks = Arc::default();
    let watch = watch_canaries(client.clone(), opts, tracks.clone());
    let gateway =
        (opts.provider == BenchProvider::GatewayApiV1).then(|| accept_routes(client.clone()));
    let mut controller = ControllerProcess::start(opts, &kubeconfig, &dir)?;
    let sampler = RssSampler::start(controller.pid());
    let http = reqwest::Client::new();

    progress(&format!("{n} canaries: creating"));
    let started = Instant::now();
    create_all(
        &client,
        (0..n)
            .map(|i| deployment(i, "ghcr.io/serin/bench:1"))
            .collect(),
        "creating a Deployment",
    )
    .await?;
    create_all(
        &client,
        (0..n).map(|i| canary(i, opts)).collect(),
        "creating a Canary",
    )
    .await?;
    let init_timeout = Duration::from_secs(120) + Duration::from_millis(50 * n as u64);
    wait_all(
        &tracks,
        n,
        init_timeout,
        &mut controller,
        |t| t.phase == Some(CanaryPhase::Initialized),
        "Initialized",
    )
    .await?;
    let init_secs = started.elapsed().as_secs_f64();

    progress(&format!(
        "{n} canaries: initialized in {init_secs:.1} s; idle for {IDLE_INTERVALS} intervals"
    ));
    // Let the writes of the last initialisations settle before counting.
    tokio::time::sleep(opts.interval.max(Duration::from_secs(1))).await;
    let init_writes = by_resource(&cluster.requests().writes());
    cluster.requests().reset();
    let idle_started = Instant::now();
    tokio::time::sleep(opts.interval * IDLE_INTERVALS).await;
    let idle_requests = controller_requests(&cluster);
    let idle_secs = idle_started.elapsed().as_secs_f64();
    let rss_rest = rss_bytes(controller.pid());
    let heap_rest = controller
        .scrape(&http)
        .await
        .and_then(|t| stats::parse_value(&t, "serin_heap_live_bytes"));

    progress(&format!(
        "{n} canaries: idle requests {idle_requests}; rolling out"
    ));
    let lag_before = controller.scrape(&http).await.unwrap_or_default();
    cluster.requests().reset();
    let rollout_started = Instant::now();
    let patches = (0..n).map(|i| {
        let api: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
        async move {
            let patch = json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": "ghcr.io/serin/bench:2", "ports": [{"name": "http", "containerPort": 8080}]}]}}}});
            api.patch(&format!("app-{i}"), &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| Error::Api("changing a Deployment's image", e))?;
            Ok::<(), Error>(())
        }
    });
    futures::stream::iter(patches)
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    let ideal = opts.interval * opts.steps;
    let rollout_timeout =
        ideal * 4 + Duration::from_secs(120) + Duration::from_millis(50 * n as u64);
    let finished = wait_all(
        &tracks,
        n,
        rollout_timeout,
        &mut controller,
        |t| matches!(t.phase, Some(CanaryPhase::Succeeded | CanaryPhase::Failed)),
        "finished",
    )
    .await;
    let rollout_secs = rollout_started.elapsed().as_secs_f64();
    let lag_after = controller.scrape(&http).await.unwrap_or_default();
    let writes = cluster.requests().writes();
    let tracked = lock(&tracks).clone();
    let not_succeeded = n.saturating_sub(
        tracked
            .values()
            .filter(|t| t.phase == Some(CanaryPhase::Succeeded))
            .count(),
    );
    if let Err(e) = finished {
        progress(&format!("{n} canaries: {e}"));
    }
    let rss_peak = sampler.peak().max(rss_bytes(controller.pid()));
    drop(sampler);
    drop(controller);
    watch.abort();
    if let Some(g) = gateway {
        g.abort();
    }
    sims.shutdown().await;
    cluster.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);

    let lag = stats::histogram_delta(
        &stats::parse_histogram(&lag_before, "serin_analysis_tick_lag_seconds"),
        &stats::parse_histogram(&lag_after, "serin_analysis_tick_lag_seconds"),
    );
    let controller_writes: Vec<_> = writes
        .iter()
        .filter(|w| w.key.user_agent.starts_with(CONTROLLER_UA))
        .collect();
    let writes_by_resource = by_resource(&writes);
    let ok_writes: Vec<(String, DateTime<Utc>)> = controller_writes
        .iter()
        .filter(|w| w.succeeded())
        .map(|w| (stats::canary_of(&w.key.name).to_string(), w.at))
        .collect();
    let windows: HashMap<String, (DateTime<Utc>, DateTime<Utc>)> = tracked
        .iter()
        .filter_map(|(name, t)| Some((name.clone(), (t.first_step?, t.last_step?))))
        .collect();
    let writes_per_step = stats::writes_per_step(&ok_writes, &windows, opts.steps);
    let ideal_secs = ideal.as_secs_f64();
    Ok(Run {
        canaries: n,
        provider: opts.provider,
        interval_secs: opts.interval.as_secs_f64(),
        steps: opts.steps,
        init_secs,
        init_writes_per_canary: init_writes.values().sum::<u64>() as f64 / n.max(1) as f64,
        init_writes_by_resource: init_writes,
        idle_requests,
        idle_secs,
        rollout_secs,
        ideal_secs,
        rollout_ratio: rollout_secs / ideal_secs.max(f64::MIN_POSITIVE),
        schedule_ratio: rollout_secs
            / (opts.interval.as_secs_f64() * f64::from(opts.steps + 1)).max(f64::MIN_POSITIVE),
        not_succeeded,
        tick_lag_p50_ms: stats::quantile(&lag, 0.5).map(|s| s * 1e3),
        tick_lag_p99_ms: stats::quantile(&lag, 0.99).map(|s| s * 1e3),
        tick_lag_samples: lag.last().map_or(0, |b| b.1 as u64),
        writes_per_canary: ok_writes.len() as f64 / n.max(1) as f64,
        writes_per_step,
        writes_by_resource,
        refused_writes: controller_writes.iter().filter(|w| !w.succeeded()).count() as u64,
        rss_rest_mib: rss_rest as f64 / MIB,
        rss_peak_mib: rss_peak as f64 / MIB,
        heap_rest_mib: heap_rest.map(|b| b / MIB),
    })
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

/// The report as a table, one row per size.
pub fn table(report: &Report) -> String {
    let mut out = format!(
        "{:>8} {:>14} {:>8} {:>9} {:>9} {:>10} {:>10} {:>9} {:>9} {:>9} {:>10} {:>10} {:>9} {:>9} {:>9} {:>6}\n",
        "canaries",
        "provider",
        "init s",
        "init w/c",
        "idle req",
        "rollout s",
        "wall/ideal",
        "wall/sched",
        "writes/c",
        "writes/st",
        "lag p50ms",
        "lag p99ms",
        "RSS rest",
        "RSS peak",
        "heap rest",
        "failed"
    );
    for r in &report.runs {
        out.push_str(&format!(
            "{:>8} {:>14} {:>8.1} {:>9.1} {:>9} {:>10.1} {:>10.2} {:>9.2} {:>9.1} {:>9} {:>10} {:>10} {:>7.1}Mi {:>7.1}Mi {:>9} {:>6}\n",
            r.canaries,
            r.provider.as_str(),
            r.init_secs,
            r.init_writes_per_canary,
            r.idle_requests,
            r.rollout_secs,
            r.rollout_ratio,
            r.schedule_ratio,
            r.writes_per_canary,
            opt(r.writes_per_step, 2),
            opt(r.tick_lag_p50_ms, 1),
            opt(r.tick_lag_p99_ms, 1),
            r.rss_rest_mib,
            r.rss_peak_mib,
            r.heap_rest_mib
                .map_or("-".into(), |h| format!("{h:.1}Mi")),
            r.not_succeeded,
        ));
    }
    out.push_str(&format!(
        "{} CPUs; load average {:?} before, {:?} after\n",
        report.cpus, report.load_before, report.load_after
    ));
    out
}

/// Each figure of `now` divided by the same figure of `before` (matched by size and provider).
pub fn compare(now: &Report, before: &Report) -> String {
    let mut out = String::from(
        "ratio to the earlier run (now / before; below 1 is better for every column):\n",
    );
    out.push_str(&format!(
        "{:>8} {:>14} {:>8} {:>9} {:>10} {:>9} {:>9} {:>10} {:>10} {:>9} {:>9}\n",
        "canaries",
        "provider",
        "init",
        "idle req",
        "wall/ideal",
        "writes/c",
        "writes/st",
        "lag p50",
        "lag p99",
        "RSS rest",
        "RSS peak"
    ));
    for r in &now.runs {
        let Some(b) = before
            .runs
            .iter()
            .find(|b| b.canaries == r.canaries && b.provider == r.provider)
        else {
            out.push_str(&format!(
                "{:>8} {:>14} (not in the earlier run)\n",
                r.canaries,
                r.provider.as_str()
            ));
            continue;
        };
        let ratio = |a: Option<f64>, b: Option<f64>| opt(stats::ratio(a, b), 2);
        out.push_str(&format!(
            "{:>8} {:>14} {:>8} {:>9} {:>10} {:>9} {:>9} {:>10} {:>10} {:>9} {:>9}\n",
            r.canaries,
            r.provider.as_str(),
            ratio(Some(r.init_secs), Some(b.init_secs)),
            ratio(Some(r.idle_requests as f64), Some(b.idle_requests as f64)),
            ratio(Some(r.rollout_ratio), Some(b.rollout_ratio)),
            ratio(Some(r.writes_per_canary), Some(b.writes_per_canary)),
            ratio(r.writes_per_step, b.writes_per_step),
            ratio(r.tick_lag_p50_ms, b.tick_lag_p50_ms),
            ratio(r.tick_lag_p99_ms, b.tick_lag_p99_ms),
            ratio(Some(r.rss_rest_mib), Some(b.rss_rest_mib)),
            ratio(Some(r.rss_peak_mib), Some(b.rss_peak_mib)),
        ));
    }
    out
}
