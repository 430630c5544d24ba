//! `serin demo`: a real progressive delivery on the embedded cluster (cluster, simulated
//! workloads, the real `serin controller` process, app servers, a Gateway data plane, load and a
//! real Prometheus), told as scenarios; orchestrates processes, network and API I/O.
pub mod app;
pub mod gateway;
pub mod load;
pub mod prometheus;
pub mod routing;
pub mod view;

use crate::api::Canary;
use crate::cluster::sim::{self, SimConfig};
use crate::cluster::{ClusterConfig, ClusterHandle};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use view::{CheckView, EventView, RateView, ScenarioResult, Snapshot};

/// The namespace the demo runs in.
pub const NAMESPACE: &str = "demo";
/// The app (Deployment and Canary) name.
pub const APP: &str = "podinfo";
/// The Host the load generator sends.
pub const HOST: &str = "podinfo.demo.example";
const GATEWAY: &str = "demo-gateway";
const FIELD_MANAGER: &str = "demo-gitops";
const DEPLOYMENT_YAML: &str = include_str!("../../examples/demo/podinfo.yaml");
const CANARY_YAML: &str = include_str!("../../examples/demo/canary.yaml");
const GATEWAY_YAML: &str = include_str!("../../examples/demo/gateway.yaml");
const GATEWAY_API_CRDS: &str = include_str!("gateway-api-crds.yaml");

/// Which scenarios to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Deploy a healthy v2: traffic shifts step by step and v2 is promoted.
    Promote,
    /// Deploy v3, which fails 30% of requests: the analysis fails and traffic returns to the primary.
    Rollback,
    /// Both, in that order.
    All,
}

/// Demo settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// The scenarios.
    pub scenario: Scenario,
    /// Plain log lines instead of the live view.
    pub plain: bool,
    /// ANSI colours in the live view and the summary (a terminal without `NO_COLOR`).
    pub colour: bool,
    /// Leave everything running at the end.
    pub keep_running: bool,
    /// The Prometheus binary, if not found by the usual rules.
    pub prometheus: Option<PathBuf>,
    /// Requests per second of the load generator.
    pub rps: u32,
    /// The `serin` binary that runs the controller.
    pub serin_binary: PathBuf,
}

/// Errors that stop the demo.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Prometheus is missing or did not start.
    #[error(transparent)]
    Prometheus(#[from] prometheus::Error),
    /// The embedded cluster did not start.
    #[error("embedded cluster: {0}")]
    Cluster(#[from] crate::cluster::Error),
    /// A simulator did not start.
    #[error("simulated controllers: {0}")]
    Sim(#[from] crate::cluster::sim::Error),
    /// An API call failed.
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
    /// The gateway did not start.
    #[error("demo gateway: {0}")]
    Gateway(#[from] gateway::Error),
    /// A local file or process failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A bundled manifest did not parse (a bug in the demo).
    #[error("bundled manifest: {0}")]
    Manifest(String),
    /// Something did not happen in time.
    #[error("{0} (controller log: {1})")]
    Timeout(String, String),
    /// Ctrl-C.
    #[error("interrupted; everything the demo started was stopped")]
    Interrupted,
    /// Nobody reads stdout any more (a closed pipe); the demo stops quietly.
    #[error("stdout was closed; everything the demo started was stopped")]
    OutputClosed,
    /// The load generator's client could not be built.
    #[error("load generator: {0}")]
    Load(#[from] reqwest::Error),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// One version of the app, as its Deployment change sets it.
struct Version {
    name: &'static str,
    image_tag: &'static str,
    latency_ms: u32,
    error_rate: f64,
    description: &'static str,
}

const V1: Version = Version {
    name: "v1",
    image_tag: "6.0.0",
    latency_ms: 15,
    error_rate: 0.0,
    description: "v1",
};
const V2: Version = Version {
    name: "v2",
    image_tag: "6.0.1",
    latency_ms: 20,
    error_rate: 0.0,
    description: "deploy v2 (healthy)",
};
const V3: Version = Version {
    name: "v3",
    image_tag: "6.0.2",
    latency_ms: 20,
    error_rate: 0.3,
    description: "deploy v3 (30% of requests fail)",
};

fn yaml_docs(text: &str) -> Result<Vec<Value>, Error> {
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v: Value = serde::Deserialize::deserialize(doc)
            .map_err(|e: serde_yaml_ng::Error| Error::Manifest(e.to_string()))?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// The demo Deployment running `v`: the bundled manifest with the image tag and env changed, as
/// a Git commit would change it.
fn deployment(v: &Version) -> Result<Value, Error> {
    let mut d = yaml_docs(DEPLOYMENT_YAML)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Manifest("podinfo.yaml is empty".into()))?;
    let c = &mut d["spec"]["template"]["spec"]["containers"][0];
    c["image"] = json!(format!("ghcr.io/stefanprodan/podinfo:{}", v.image_tag));
    c["env"] = json!([
        {"name": "DEMO_VERSION", "value": v.name},
        {"name": "DEMO_LATENCY_MS", "value": v.latency_ms.to_string()},
        {"name": "DEMO_ERROR_RATE", "value": v.error_rate.to_string()},
    ]);
    Ok(d)
}

async fn apply(client: &kube::Client, obj: &Value) -> Result<(), Error> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = match obj["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await?;
    Ok(())
}

/// Where the demo keeps its kubeconfig, logs and Prometheus data while it runs.
fn work_dir() -> PathBuf {
    std::env::temp_dir().join(format!("serin-demo-{}", std::process::id()))
}

/// Everything the demo started; dropping it stops it all.
struct Stack {
    dir: PathBuf,
    kubeconfig: PathBuf,
    client: kube::Client,
    gateway: gateway::Gateway,
    prometheus: prometheus::Prometheus,
    /// Held so that dropping the stack kills it (`kill_on_drop`).
    _controller: tokio::process::Child,
    load: Option<load::Load>,
    _app: tokio::task::JoinHandle<()>,
    _sims: sim::SimHandle,
    _cluster: ClusterHandle,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self._app.abort();
    }
}

#[derive(Clone, Copy)]
struct Out {
    plain: bool,
    colour: bool,
}

impl Out {
    fn say(&self, line: &str) -> Result<(), Error> {
        self.write(&format!("{line}\n"))
    }

    fn frame(&self, s: &Snapshot) -> Result<(), Error> {
        let mut frame = view::frame(s);
        if !self.colour {
            frame = view::strip_colours(&frame);
        }
        // Home, draw, clear what is left of the previous frame.
        self.write(&format!("\x1b[H{}\x1b[J", frame.replace('\n', "\x1b[K\n")))
    }

    /// Writes to stdout. A reader that has gone (`serin demo | head`) stops the demo with
    /// [`Error::OutputClosed`], which unwinds the stack and so stops every child process; other
    /// write errors are ignored, as a live view cannot report them anywhere better.
    fn write(&self, text: &str) -> Result<(), Error> {
        let mut stdout = std::io::stdout().lock();
        match stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
        {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Error::OutputClosed),
            _ => Ok(()),
        }
    }
}

async fn start_stack(opts: &Options, out: &Out) -> Result<Stack, Error> {
    let prom_bin = prometheus::locate(opts.prometheus.as_deref())?;
    let dir = work_dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let t0 = Instant::now();
    let (cluster, sims) = sim::start_cluster(
        ClusterConfig {
            nodes: 2,
            ..ClusterConfig::default()
        },
        SimConfig {
            pod_ready_delay: Duration::from_millis(300),
            ..SimConfig::default()
        },
    )
    .await?;
    let kubeconfig = dir.join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig)?;
    let client = cluster.client()?;
    out.say(&format!(
        "embedded cluster up at {} (kubeconfig {})",
        cluster.url(),
        kubeconfig.display()
    ))?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut all: Vec<CustomResourceDefinition> = crate::api::crd::all();
    for doc in yaml_docs(GATEWAY_API_CRDS)? {
        all.push(serde_json::from_value(doc).map_err(|e| Error::Manifest(e.to_string()))?);
    }
    for crd in &all {
        crds.create(&PostParams::default(), crd).await?;
    }
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))
        .map_err(|e| Error::Manifest(e.to_string()))?;
    nss.create(&PostParams::default(), &ns).await?;
    wait_served(&client).await?;
    out.say("installed the Flagger-compatible CRDs and Gateway API CRDs")?;
    let registry = app::Registry::default();
    let app_task = app::run(
        client.clone(),
        NAMESPACE,
        registry.clone(),
        Duration::from_secs(3),
    );
    let gw = gateway::Gateway::start(client.clone(), NAMESPACE, GATEWAY, registry).await?;
    for doc in yaml_docs(GATEWAY_YAML)? {
        apply(&client, &doc).await?;
    }
    out.say(&format!(
        "demo gateway listening on {} (metrics on {})",
        gw.proxy_addr, gw.metrics_addr
    ))?;
    let prom = prometheus::start(&prom_bin, &dir.join("prometheus"), gw.metrics_addr).await?;
    out.say(&format!(
        "Prometheus {} scraping the gateway every 1s at {}",
        prom_bin.display(),
        prom.url
    ))?;
    let log = std::fs::File::create(dir.join("controller.log"))
        .map_err(io("creating the controller log"))?;
    let controller = tokio::process::Command::new(&opts.serin_binary)
        .arg("controller")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "-mesh-provider=gatewayapi:v1",
            "--metrics-server",
            &prom.url,
            "--min-interval",
            "1",
            "--port",
            "0",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(io(format!(
            "starting {} controller",
            opts.serin_binary.display()
        )))?;
    out.say(&format!(
        "serin controller started (pid {}), log {}; everything up in {:.1}s",
        controller.id().unwrap_or_default(),
        dir.join("controller.log").display(),
        t0.elapsed().as_secs_f64()
    ))?;
    Ok(Stack {
        dir,
        kubeconfig,
        client,
        gateway: gw,
        prometheus: prom,
        _controller: controller,
        load: None,
        _app: app_task,
        _sims: sims,
        _cluster: cluster,
    })
}

async fn wait_served(client: &kube::Client) -> Result<(), Error> {
    let canaries: Api<Canary> = Api::namespaced(client.clone(), NAMESPACE);
    let routes: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), NAMESPACE, &gateway::httproute_resource());
    for _ in 0..100 {
        if canaries.list(&ListParams::default()).await.is_ok()
            && routes.list(&ListParams::default()).await.is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(Error::Timeout(
        "the CRDs were not served within 5s".into(),
        String::new(),
    ))
}

impl Stack {
    fn controller_log(&self) -> String {
        self.dir.join("controller.log").display().to_string()
    }

    fn timeout(&self, what: impl Into<String>) -> Error {
        Error::Timeout(what.into(), self.controller_log())
    }

    async fn canary(&self) -> Result<Option<Canary>, Error> {
        let api: Api<Canary> = Api::namespaced(self.client.clone(), NAMESPACE);
        Ok(api.get_opt(APP).await?)
    }

    async fn events(&self) -> Result<Vec<EventView>, Error> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), NAMESPACE);
        let mut evs: Vec<Event> = api
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|e| {
                e.regarding
                    .as_ref()
                    .is_some_and(|r| r.kind.as_deref() == Some("Canary"))
            })
            .collect();
        evs.sort_by_key(|e| {
            (
                e.metadata.creation_timestamp.clone().map(|t| t.0),
                e.metadata
                    .resource_version
                    .as_deref()
                    .and_then(|r| r.parse::<u64>().ok()),
            )
        });
        Ok(evs
            .into_iter()
            .rev()
            .take(6)
            .rev()
            .map(|e| EventView {
                type_: e.type_.unwrap_or_default(),
                reason: e.reason.unwrap_or_default(),
                message: e.note.unwrap_or_default(),
            })
            .collect())
    }

    /// The version the primary Deployment's template runs.
    async fn primary_version(&self) -> Result<String, Error> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), NAMESPACE);
        let d = api.get_opt(&format!("{APP}-primary")).await?;
        let v = d.and_then(|d| serde_json::to_value(d).ok());
        Ok(v.as_ref()
            .and_then(|d| d["spec"]["template"]["spec"]["containers"][0]["env"].as_array())
            .into_iter()
            .flatten()
            .find(|e| e["name"] == "DEMO_VERSION")
            .and_then(|e| e["value"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| "none".into()))
    }
}

/// Per-version request rates over a sliding window of gateway counters.
struct Rates {
    window: VecDeque<(Instant, gateway::Stats)>,
}

impl Rates {
    fn push(&mut self, now: Instant, s: gateway::Stats) -> Vec<RateView> {
        self.window.push_back((now, s));
        while self
            .window
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(2))
        {
            self.window.pop_front();
        }
        let (Some((t0, first)), Some((t1, last))) = (self.window.front(), self.window.back())
        else {
            return vec![];
        };
        let secs = t1.duration_since(*t0).as_secs_f64();
        if secs <= 0.0 {
            return vec![];
        }
        last.versions
            .iter()
            .filter_map(|(v, c)| {
                let before = first.versions.get(v).cloned().unwrap_or_default();
                let n = c.requests - before.requests;
                let e = c.errors - before.errors;
                (n > 0).then(|| RateView {
                    version: v.clone(),
                    rps: n as f64 / secs,
                    error_pct: 100.0 * e as f64 / n as f64,
                })
            })
            .collect()
    }
}

fn snapshot(
    scenario: &str,
    title: &str,
    elapsed: Duration,
    canary: Option<&Canary>,
    events: Vec<EventView>,
    rates: Vec<RateView>,
    routing_failures: u64,
) -> Snapshot {
    let status = canary.and_then(|c| c.status.clone()).unwrap_or_default();
    let checks = status
        .checks
        .iter()
        .flatten()
        .filter(|c| c.kind == "metric" || c.kind.is_empty())
        .map(|c| CheckView {
            name: c.name.clone(),
            value: c.value,
            min: c.min,
            max: c.max,
            outcome: c.outcome.clone(),
        })
        .collect();
    Snapshot {
        scenario: scenario.to_string(),
        title: title.to_string(),
        elapsed,
        phase: status
            .phase
            .map(|p| p.to_string())
            .unwrap_or_else(|| "Pending".into()),
        canary_weight: status.canary_weight.into(),
        failed_checks: status.failed_checks.into(),
        threshold: canary
            .and_then(|c| c.spec.analysis.as_ref())
            .and_then(|a| a.threshold)
            .unwrap_or(1)
            .into(),
        checks,
        events,
        rates,
        routing_failures,
        finished: Vec::new(),
    }
}

/// One stretch of the story the live view follows.
struct Leg<'a> {
    scenario: &'a str,
    title: &'a str,
    started: Instant,
    limit: Duration,
}

/// Watches the Canary until `done(phase, seen_progressing)` holds, drawing every change.
async fn follow(
    stack: &Stack,
    out: &Out,
    leg: Leg<'_>,
    prev: &mut Option<Snapshot>,
    finished: &[String],
    done: impl Fn(&str, bool) -> bool,
) -> Result<(String, Vec<String>), Error> {
    let Leg {
        scenario,
        title,
        started,
        limit,
    } = leg;
    let mut rates = Rates {
        window: VecDeque::new(),
    };
    let mut states: Vec<String> = Vec::new();
    let mut progressing = false;
    let baseline_failures = stack.gateway.stats().routing_failures_total();
    loop {
        let canary = stack.canary().await?;
        let events = stack.events().await?;
        let stats = stack.gateway.stats();
        let failures = stats.routing_failures_total() - baseline_failures;
        let r = rates.push(Instant::now(), stats);
        let mut snap = snapshot(
            scenario,
            title,
            started.elapsed(),
            canary.as_ref(),
            events,
            r,
            failures,
        );
        snap.finished = finished.to_vec();
        if snap.phase == "Progressing" {
            progressing = true;
        }
        let mut state = format!("{} {}%", snap.phase, snap.canary_weight);
        if snap.failed_checks > 0 && snap.phase == "Progressing" {
            state.push_str(&format!(" ({} failed)", snap.failed_checks));
        }
        if progressing && states.last() != Some(&state) {
            states.push(state);
        }
        if out.plain {
            for line in view::plain_lines(prev.as_ref(), &snap) {
                out.say(&line)?;
            }
        } else {
            out.frame(&snap)?;
        }
        let phase = snap.phase.clone();
        *prev = Some(snap);
        if done(&phase, progressing) {
            return Ok((phase, states));
        }
        if started.elapsed() > limit {
            return Err(stack.timeout(format!(
                "scenario {scenario}: the Canary was still {phase} after {}s",
                limit.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn served_between(a: &gateway::Stats, b: &gateway::Stats) -> Vec<(String, u64)> {
    b.versions
        .iter()
        .map(|(v, c)| {
            let before = a.versions.get(v).map_or(0, |x| x.requests);
            (v.clone(), c.requests - before)
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// A scenario: the version it deploys and the phase the story expects.
struct Step {
    name: &'static str,
    version: &'static Version,
    expected: &'static str,
}

async fn run_scenario(
    stack: &Stack,
    out: &Out,
    step: &Step,
    interval: Duration,
    prev: &mut Option<Snapshot>,
    finished: &[String],
) -> Result<ScenarioResult, Error> {
    let Step {
        name,
        version,
        expected,
    } = *step;
    let before_primary = stack.primary_version().await?;
    let expected_primary = if expected == "Succeeded" {
        version.name.to_string()
    } else {
        before_primary.clone()
    };
    let stats_before = stack.gateway.stats();
    if out.plain {
        out.say(&format!("== scenario {name}: {}", version.description))?;
    }
    let started = Instant::now();
    apply(&stack.client, &deployment(version)?).await?;
    let (outcome, states) = follow(
        stack,
        out,
        Leg {
            scenario: name,
            title: version.description,
            started,
            limit: Duration::from_secs(120),
        },
        prev,
        finished,
        |phase, progressing| progressing && matches!(phase, "Succeeded" | "Failed"),
    )
    .await?;
    let duration = started.elapsed();
    let stats_after = stack.gateway.stats();
    Ok(ScenarioResult {
        scenario: name.to_string(),
        outcome,
        expected: expected.to_string(),
        duration,
        states,
        interval,
        served: served_between(&stats_before, &stats_after),
        primary_version: stack.primary_version().await?,
        expected_primary,
        routing_failures: stats_after.routing_failures_total()
            - stats_before.routing_failures_total(),
    })
}

/// Runs the demo and returns whether every scenario ended as the story says.
///
/// Ctrl-C at any point stops everything the demo started (child processes included) and returns
/// [`Error::Interrupted`]; with `keep_running`, Ctrl-C after the story is the normal way out.
pub async fn run(opts: Options) -> Result<bool, Error> {
    let out = Out {
        plain: opts.plain,
        colour: opts.colour,
    };
    let (ok, stack) = tokio::select! {
        r = story(&opts, &out) => match r {
            Err(Error::OutputClosed) => {
                // Nobody is reading: nothing to debug later either.
                let _ = std::fs::remove_dir_all(work_dir());
                return Err(Error::OutputClosed);
            }
            r => r?,
        },
        _ = tokio::signal::ctrl_c() => {
            // The story's future is dropped by now, and with it every child process.
            let _ = std::fs::remove_dir_all(work_dir());
            return Err(Error::Interrupted);
        }
    };
    if opts.keep_running {
        out.say(&format!(
            "\nEverything keeps running (Ctrl-C to stop). Try:\n  kubectl --kubeconfig {} -n {NAMESPACE} get canaries,deployments,httproutes,gateways\n  curl -H 'Host: {HOST}' http://{}/\n  Prometheus: {}\n  controller log: {}",
            stack.kubeconfig.display(),
            stack.gateway.proxy_addr,
            stack.prometheus.url,
            stack.controller_log()
        ))?;
        let _ = tokio::signal::ctrl_c().await;
    }
    let dir = stack.dir.clone();
    drop(stack);
    if ok && !opts.keep_running {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(ok)
}

/// Starts everything, tells the story and returns whether it went as expected, with everything
/// still running.
async fn story(opts: &Options, out: &Out) -> Result<(bool, Stack), Error> {
    let out = *out;
    let wall = Instant::now();
    let mut stack = start_stack(opts, &out).await?;
    let canary_doc = yaml_docs(CANARY_YAML)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Manifest("canary.yaml is empty".into()))?;
    let interval = canary_doc["spec"]["analysis"]["interval"]
        .as_str()
        .and_then(|s| crate::api::duration::parse_duration(s).ok())
        .unwrap_or(Duration::from_secs(2));
    apply(&stack.client, &deployment(&V1)?).await?;
    apply(&stack.client, &canary_doc).await?;
    out.say("applied podinfo v1 and its Canary; waiting for the Canary to initialize")?;
    if !out.plain {
        // The live view owns the screen from here on.
        out.write("\x1b[2J")?;
    }
    let init_started = Instant::now();
    let mut prev: Option<Snapshot> = None;
    follow(
        &stack,
        &out,
        Leg {
            scenario: "init",
            title: "install v1 and its Canary",
            started: init_started,
            limit: Duration::from_secs(60),
        },
        &mut prev,
        &[],
        |phase, _| phase == "Initialized",
    )
    .await?;
    for _ in 0..100 {
        if stack.gateway.has_routes() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stack.load = Some(load::Load::start(stack.gateway.proxy_addr, HOST, opts.rps)?);
    if out.plain {
        out.say(&format!(
            "Canary initialized in {:.1}s; sending {} req/s through the gateway",
            init_started.elapsed().as_secs_f64(),
            opts.rps
        ))?;
    }
    // Let Prometheus see the primary's traffic before the first change.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let promote = Step {
        name: "promote",
        version: &V2,
        expected: "Succeeded",
    };
    let rollback = Step {
        name: "rollback",
        version: &V3,
        expected: "Failed",
    };
    let plan = match opts.scenario {
        Scenario::Promote => vec![promote],
        Scenario::Rollback => vec![rollback],
        Scenario::All => vec![promote, rollback],
    };
    let mut results: Vec<ScenarioResult> = Vec::new();
    for step in &plan {
        let finished: Vec<String> = results
            .iter()
            .map(|r| {
                format!(
                    "{} → {} in {:.1}s, primary {}",
                    r.scenario,
                    r.outcome,
                    r.duration.as_secs_f64(),
                    r.primary_version
                )
            })
            .collect();
        results.push(run_scenario(&stack, &out, step, interval, &mut prev, &finished).await?);
    }
    // The live view's last frame stays on screen; the summary follows below it.
    let load = stack.load.as_ref().map(|l| l.stats()).unwrap_or_default();
    out.say("")?;
    out.say(&view::summary(&results, out.colour))?;
    for r in &results {
        out.say(&view::result_line(r))?;
    }
    out.say(&format!(
        "load generator: {} requests sent, answers by status {:?}, {} routing failures, {} transport errors; wall time {:.1}s",
        load.sent,
        load.by_status,
        load.routing_failures.values().sum::<u64>(),
        load.transport_errors,
        wall.elapsed().as_secs_f64()
    ))?;
    let ok = results.iter().all(ScenarioResult::as_expected);
    for r in results.iter().filter(|r| !r.as_expected()) {
        out.say(&format!(
            "scenario {} did not end as expected: outcome {} (expected {}), primary {} (expected {}), {} routing failures; controller log {}",
            r.scenario,
            r.outcome,
            r.expected,
            r.primary_version,
            r.expected_primary,
            r.routing_failures,
            stack.controller_log()
        ))?;
    }
    Ok((ok, stack))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_version_is_a_change_to_the_bundled_deployment() {
        let v1 = deployment(&V1).unwrap();
        let v3 = deployment(&V3).unwrap();
        assert_eq!(v1["metadata"]["name"], APP);
        assert_eq!(
            v3["spec"]["template"]["spec"]["containers"][0]["env"][2],
            json!({"name": "DEMO_ERROR_RATE", "value": "0.3"})
        );
        assert_ne!(
            v1["spec"]["template"]["spec"]["containers"][0]["image"],
            v3["spec"]["template"]["spec"]["containers"][0]["image"]
        );
        let d: Deployment = serde_json::from_value(v3).unwrap();
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
            "spec": d.spec.template.spec
        }))
        .unwrap();
        let b = app::Behaviour::of(&pod).unwrap();
        assert_eq!((b.version.as_str(), b.error_rate), ("v3", 0.3));
    }

    #[test]
    fn the_bundled_manifests_parse() {
        assert_eq!(yaml_docs(GATEWAY_YAML).unwrap().len(), 2);
        assert_eq!(yaml_docs(GATEWAY_API_CRDS).unwrap().len(), 3);
        let c: Canary = serde_json::from_value(yaml_docs(CANARY_YAML).unwrap().remove(0)).unwrap();
        assert_eq!(c.spec.provider.as_deref(), Some("gatewayapi:v1"));
    }
}
