//! End to end under faults: several canaries on the Gateway API router roll out while the embedded
//! cluster answers 500 to patches, 409 to updates and 429 to creates, cuts every watch after a few
//! seconds, and the real `serin controller` binary is killed with SIGKILL and restarted at random
//! moments. A sampler reads the HTTPRoutes and Pods about every 100 ms and checks the traffic
//! invariants; at the end every healthy revision is promoted and every faulty one rolled back.
//!
//! The kill schedule comes from a seeded RNG: the seed is printed, and `SERIN_FAULTS_SEED=<seed>`
//! replays it (the server's fault rolls stay random). The harness is tests/common/e2e.rs.
mod common;

use anyhow::Context;
use common::e2e::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams};
use serde_json::{Value, json};
use serin::api::{Canary, CanaryPhase};
use serin::cluster::faults::Fault;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const GW_V1: &str = "gateway.networking.k8s.io/v1";
const OLD_IMAGE: &str = "podinfo:1.0.0";
const NEW_IMAGE: &str = "podinfo:2.0.0";
/// Canaries in the run; the odd ones get a faulty revision.
const CANARIES: usize = 6;

/// How a new revision behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Revision {
    /// Its Pods become ready and every check passes.
    Healthy,
    /// Its Pods never become ready (the simulator's `sim.serin.dev/fault: unready`).
    Unready,
    /// Its Pods are ready, but the rollout webhook fails (nothing listens at its URL).
    FailingWebhook,
}

impl Revision {
    fn faulty(self) -> bool {
        self != Revision::Healthy
    }
}

/// One canary of the run: its target Deployment, its Canary, and how its new revision behaves.
#[derive(Debug, Clone)]
struct Case {
    name: String,
    revision: Revision,
}

impl Case {
    fn new(i: usize) -> Case {
        let revision = match i % 4 {
            1 => Revision::Unready,
            3 => Revision::FailingWebhook,
            _ => Revision::Healthy,
        };
        Case {
            name: format!("app{i}"),
            revision,
        }
    }

    /// The target Deployment on `image`; the new revision carries the simulator's fault.
    fn deployment(&self, image: &str) -> Value {
        let annotations = if image == NEW_IMAGE && self.revision == Revision::Unready {
            json!({"sim.serin.dev/fault": "unready"})
        } else {
            json!({})
        };
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": self.name, "namespace": NS, "labels": {"app": self.name}},
            "spec": {
                "replicas": 1,
                "progressDeadlineSeconds": 30,
                "selector": {"matchLabels": {"app": self.name}},
                "template": {
                    "metadata": {"labels": {"app": self.name}, "annotations": annotations},
                    "spec": {"containers": [{"name": "app", "image": image,
                        "ports": [{"name": "http", "containerPort": 9898}]}]}
                }
            }
        })
    }

    fn canary(&self) -> Value {
        let mut analysis =
            json!({"interval": "1s", "threshold": 2, "stepWeight": 20, "maxWeight": 60});
        if self.revision == Revision::FailingWebhook {
            // Port 1 refuses connections: every rollout check fails.
            analysis["webhooks"] =
                json!([{"name": "gate", "type": "rollout", "url": "http://127.0.0.1:1/check"}]);
        }
        json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": self.name, "namespace": NS},
            "spec": {
                "provider": "gatewayapi:v1",
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": self.name},
                "progressDeadlineSeconds": 30,
                "service": {"port": 9898, "gatewayRefs": [{"name": "public", "namespace": "gateways"}]},
                "analysis": analysis
            }
        })
    }
}

/// The faults in force during the rollouts.
fn faults() -> Vec<Fault> {
    let error = |verb: &str, rate: f64, code: u16| Fault {
        verb: Some(verb.into()),
        error_rate: rate,
        error_code: code,
        ..Fault::default()
    };
    vec![
        error("patch", 0.3, 500),
        error("update", 0.3, 409),
        error("create", 0.3, 429),
        Fault {
            verb: Some("watch".into()),
            close_watch_after_secs: Some(3),
            ..Fault::default()
        },
    ]
}

/// splitmix64: a small seeded generator for the kill schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A duration uniformly in `[lo, hi)` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo).max(1))
    }
}

/// What the sampler counted.
#[derive(Debug, Default)]
struct Samples {
    samples: u64,
    /// Route checks skipped because the route changed while the Pods were read.
    inconsistent: u64,
    /// Route checks that found traffic on a canary (so the readiness invariant was exercised).
    shifted: u64,
    violations: Vec<String>,
}

/// Whether a Pod is Ready and not being deleted.
fn pod_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `(primary, canary)` weights of the route rule that sends to both of `name`'s Services.
fn route_weights(route: &Value, name: &str) -> Option<(i64, i64)> {
    let primary = format!("{name}-primary");
    let canary = format!("{name}-canary");
    let rules = route["spec"]["rules"].as_array()?;
    rules.iter().find_map(|r| {
        let refs = r["backendRefs"].as_array()?;
        let weight = |svc: &str| {
            refs.iter()
                .find(|b| b["name"] == svc)
                .map(|b| b["weight"].as_i64().unwrap_or(1))
        };
        Some((weight(&primary)?, weight(&canary)?))
    })
}

/// Every HTTPRoute by name, with its resourceVersion and content.
async fn routes(api: &Api<DynamicObject>) -> anyhow::Result<BTreeMap<String, (String, Value)>> {
    let mut out = BTreeMap::new();
    for r in api.list(&ListParams::default()).await? {
        let v = serde_json::to_value(&r)?;
        let name = v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let rv = v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        out.insert(name, (rv, v));
    }
    Ok(out)
}

/// One sample: routes, then Pods, then routes again. A route's weights are checked against the
/// Pods only when the route did not change in between, so the two reads describe one moment.
async fn sample(
    routes_api: &Api<DynamicObject>,
    pods_api: &Api<Pod>,
    names: &[String],
    out: &Mutex<Samples>,
) -> anyhow::Result<()> {
    let before = routes(routes_api).await?;
    let pods = pods_api.list(&ListParams::default()).await?.items;
    let after = routes(routes_api).await?;
    let ready: BTreeSet<String> = pods
        .iter()
        .filter(|p| pod_ready(p))
        .filter_map(|p| p.metadata.labels.as_ref()?.get("app").cloned())
        .collect();
    let mut found = vec![];
    let mut inconsistent = 0;
    let mut shifted = 0;
    for name in names {
        if !ready.contains(&format!("{name}-primary")) {
            found.push(format!("{name}: the primary has no ready Pod"));
        }
        let (Some((rv1, route)), Some((rv2, _))) = (before.get(name), after.get(name)) else {
            found.push(format!("{name}: the HTTPRoute is missing"));
            continue;
        };
        if rv1 != rv2 {
            inconsistent += 1;
            continue;
        }
        match route_weights(route, name) {
            None => found.push(format!(
                "{name}: no rule routes to both Services: {}",
                route["spec"]
            )),
            Some((p, c)) => {
                if p + c != 100 {
                    found.push(format!("{name}: weights {p} + {c} do not sum to 100"));
                }
                shifted += u64::from(c > 0);
                if c > 0 && !ready.contains(name.as_str()) {
                    found.push(format!(
                        "{name}: weight {c} goes to a canary without a ready Pod"
                    ));
                }
            }
        }
    }
    let mut s = out
        .lock()
        .map_err(|_| anyhow::anyhow!("sampler lock poisoned"))?;
    s.samples += 1;
    s.inconsistent += inconsistent;
    s.shifted += shifted;
    if !found.is_empty() {
        // The Pods of the offending canaries, to tell a controller bug from a simulator one.
        let at = chrono::Utc::now().format("%H:%M:%S%.3f");
        for p in &pods {
            let app = p.metadata.labels.as_ref().and_then(|l| l.get("app"));
            if found
                .iter()
                .any(|v| app.is_some_and(|a| v.starts_with(&format!("{a}:"))))
            {
                eprintln!(
                    "{at} pod {} ready={} deleting={}",
                    p.metadata.name.as_deref().unwrap_or_default(),
                    pod_ready(p),
                    p.metadata.deletion_timestamp.is_some()
                );
            }
        }
        for v in &found {
            eprintln!("{at} VIOLATION: {v}");
        }
    }
    s.violations.extend(found);
    Ok(())
}

/// Applies `obj`, retrying through injected errors.
async fn apply_retrying(env: &Env, obj: Value) -> anyhow::Result<()> {
    let mut last = None;
    for _ in 0..50 {
        match env.apply(obj.clone()).await {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("apply failed")))
}

fn phase(c: &Canary) -> Option<CanaryPhase> {
    c.status.as_ref().and_then(|s| s.phase)
}

/// The embedded cluster with Serin's and the Gateway API CRDs.
async fn start_env() -> anyhow::Result<Env> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/crds/gateway-api.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let mut crds = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc)?;
        if !v.is_null() {
            crds.push(serde_json::from_value(v)?);
        }
    }
    let env = Env::start_with_crds("faults", crds).await?;
    let routes: Api<DynamicObject> =
        Api::namespaced_with(env.client.clone(), NS, &ar(GW_V1, "HTTPRoute"));
    eventually(10, "routes to be served", || async {
        Ok(routes.list(&Default::default()).await.ok())
    })
    .await?;
    Ok(env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_keep_traffic_on_ready_pods_through_api_errors_watch_cuts_and_controller_kills()
-> anyhow::Result<()> {
    let seed = std::env::var("SERIN_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!("fault matrix seed: {seed} (replay with SERIN_FAULTS_SEED={seed})");
    let mut rng = Rng(seed);
    let mut env = start_env().await?;
    let stop = Arc::new(AtomicBool::new(false));
    let gw = common::gateway::spawn(
        env_routes(&env),
        Arc::new(AtomicBool::new(true)),
        stop.clone(),
    );
    let cases: Vec<Case> = (0..CANARIES).map(Case::new).collect();
    let names: Vec<String> = cases.iter().map(|c| c.name.clone()).collect();

    // Initialisation runs without faults: the invariants hold from Initialized on.
    for c in &cases {
        env.apply(c.deployment(OLD_IMAGE)).await?;
    }
    env.start_controller()?;
    for c in &cases {
        env.apply(c.canary()).await?;
    }
    for c in &cases {
        env.wait_phase(&c.name, CanaryPhase::Initialized, 90)
            .await?;
    }

    env.cluster.faults().set(faults());
    let samples = Arc::new(Mutex::new(Samples::default()));
    let sampler = {
        let routes_api = env_routes(&env);
        let pods_api: Api<Pod> = env.api();
        let (names, samples, stop) = (names.clone(), samples.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = sample(&routes_api, &pods_api, &names, &samples).await {
                    eprintln!("sample failed: {e}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    for c in &cases {
        apply_retrying(&env, c.deployment(NEW_IMAGE)).await?;
    }
    // Kill and restart the controller at random moments until every canary has finished.
    let mut restarts = 0u32;
    let canaries: Api<Canary> = env.api();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    let mut next_kill = tokio::time::Instant::now() + rng.millis(1_000, 6_000);
    let finished = loop {
        let list = canaries.list(&ListParams::default()).await?.items;
        let done = list
            .iter()
            .filter(|c| matches!(phase(c), Some(CanaryPhase::Succeeded | CanaryPhase::Failed)));
        if done.count() == cases.len() {
            break list;
        }
        if tokio::time::Instant::now() > deadline {
            let phases: Vec<_> = list
                .iter()
                .map(|c| (c.metadata.name.clone(), phase(c)))
                .collect();
            eprintln!("controller log:\n{}", env.log());
            anyhow::bail!("canaries did not finish in time: {phases:?}");
        }
        if tokio::time::Instant::now() >= next_kill {
            env.stop_controller();
            tokio::time::sleep(rng.millis(0, 1_500)).await;
            env.start_controller()?;
            restarts += 1;
            next_kill = tokio::time::Instant::now() + rng.millis(1_000, 6_000);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // A last sample with the outcomes in place, then stop the background tasks.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let _ = gw.await;
    let injected = env.cluster.faults().injected_errors();
    env.cluster.faults().clear();

    let deployments: Api<Deployment> = env.api();
    let mut outcomes = vec![];
    for c in &cases {
        let canary = finished
            .iter()
            .find(|k| k.metadata.name.as_deref() == Some(c.name.as_str()))
            .context("canary missing")?;
        let primary = deployments.get(&format!("{}-primary", c.name)).await?;
        outcomes.push((
            c.name.clone(),
            c.revision,
            phase(canary),
            image_of(&primary),
        ));
    }
    let s = samples
        .lock()
        .map_err(|_| anyhow::anyhow!("sampler lock poisoned"))?;
    println!(
        "fault matrix: seed {seed}, {restarts} controller restarts, {injected} injected API errors, {} samples ({} route checks with canary traffic, {} skipped as inconsistent), {} violations",
        s.samples,
        s.shifted,
        s.inconsistent,
        s.violations.len()
    );
    for o in &outcomes {
        println!("  {o:?}");
    }
    if !s.violations.is_empty() {
        eprintln!("controller log:\n{}", env.log());
    }
    assert!(s.samples > 0, "the sampler never completed a sample");
    assert!(
        s.violations.is_empty(),
        "invariants violated: {:#?}",
        s.violations
    );
    for (name, revision, phase, image) in outcomes {
        let (want_phase, want_image) = if revision.faulty() {
            (CanaryPhase::Failed, OLD_IMAGE)
        } else {
            (CanaryPhase::Succeeded, NEW_IMAGE)
        };
        assert_eq!(
            (phase, image.as_deref()),
            (Some(want_phase), Some(want_image)),
            "{name} ({revision:?})"
        );
    }
    Ok(())
}

fn env_routes(env: &Env) -> Api<DynamicObject> {
    Api::namespaced_with(env.client.clone(), NS, &ar(GW_V1, "HTTPRoute"))
}
