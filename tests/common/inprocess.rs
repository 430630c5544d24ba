//! The in-process end-to-end harness shared by the router, Knative and Service suites: the
//! embedded cluster with its simulators, extra CRDs from `tests/fixtures/crds/`, the controller
//! running in-process (`controller::run_with`, so a test can inject a metrics checker) and
//! background tasks that record objects over time. Does network I/O against the embedded cluster.
#![allow(dead_code)]

use anyhow::Context;
use async_trait::async_trait;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use serin::api::{Canary, CanaryPhase};
use serin::cluster::sim::{self, SimConfig};
use serin::cluster::{ClusterConfig, ClusterHandle};
use serin::controller::observe::ObserveConfig;
use serin::metrics::{AnalysisReport, MetricsChecker, Verdict};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use super::e2e::{NS, ar};

/// The Gateway API group version the Gateway stand-in and `httproute_weights` speak.
pub const GW_V1: &str = "gateway.networking.k8s.io/v1";

/// A running embedded cluster plus the tasks a test started on it; dropping it stops them.
pub struct Env {
    pub client: Client,
    _cluster: ClusterHandle,
    _sims: sim::SimHandle,
    /// Background tasks (controller, stand-ins, recorders), aborted on drop.
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Env {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        // Every request the controller made must be allowed by deploy/'s RBAC.
        super::rbac::assert_controller_authorized(&self._cluster.requests().snapshot(), &[]);
    }
}

/// Fails every analysis once the canary weight reaches `at` (never with `i32::MAX`).
pub struct FailAt(pub i32);

#[async_trait]
impl MetricsChecker for FailAt {
    async fn check(&self, canary: &Canary) -> AnalysisReport {
        let weight = canary.status.as_ref().map(|s| s.canary_weight).unwrap_or(0);
        if weight >= self.0 {
            AnalysisReport {
                verdict: Verdict::Fail(format!("injected failure at weight {weight}")),
                records: vec![],
            }
        } else {
            AnalysisReport::pass()
        }
    }
}

/// A metrics checker that always passes.
pub fn passing() -> Arc<dyn MetricsChecker> {
    Arc::new(FailAt(i32::MAX))
}

impl Env {
    /// [`Env::start_with`] two nodes whose Pods become ready after 100 ms, plus the CRDs of
    /// `crd_files`.
    pub async fn start_two_nodes(crd_files: &[&str]) -> anyhow::Result<Env> {
        let cluster = ClusterConfig {
            nodes: 2,
            ..ClusterConfig::default()
        };
        let sims = SimConfig {
            pod_ready_delay: Duration::from_millis(100),
            ..SimConfig::default()
        };
        Env::start_with(cluster, sims, crd_files).await
    }

    /// Starts the cluster, installs Serin's CRDs plus those of `crd_files` (names in
    /// `tests/fixtures/crds/`), creates the namespace and waits until Canaries are served.
    pub async fn start_with(
        cluster: ClusterConfig,
        sims: SimConfig,
        crd_files: &[&str],
    ) -> anyhow::Result<Env> {
        let (cluster, sims) = sim::start_cluster(cluster, sims).await?;
        let client = cluster.client()?;
        let mut all = serin::api::crd::all();
        for f in crd_files {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/crds")
                .join(f);
            let text =
                std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
            for doc in serde_yaml_ng::Deserializer::from_str(&text) {
                let v: Value = serde::Deserialize::deserialize(doc)?;
                if !v.is_null() {
                    all.push(serde_json::from_value(v)?);
                }
            }
        }
        super::e2e::install(&client, all).await?;
        let canaries: Api<Canary> = Api::namespaced(client.clone(), NS);
        eventually(10, "canaries to be served", || async {
            Ok(canaries.list(&Default::default()).await.ok())
        })
        .await?;
        Ok(Env {
            client,
            _cluster: cluster,
            _sims: sims,
            tasks: vec![],
        })
    }

    /// Runs the controller in-process for `NS` with 1-second intervals, mesh provider
    /// `provider`, the given metrics checker and router settings.
    pub fn start_controller(
        &mut self,
        provider: &str,
        metrics: Arc<dyn MetricsChecker>,
        routers: serin::router::RouterConfig,
    ) {
        self.start_controller_with(
            provider,
            metrics,
            routers,
            Arc::new(serin::webhook::NoWebhooks::default()),
        );
    }

    /// [`Env::start_controller`] with the given webhooks (e.g. a gate that stays closed).
    pub fn start_controller_with(
        &mut self,
        provider: &str,
        metrics: Arc<dyn MetricsChecker>,
        routers: serin::router::RouterConfig,
        webhooks: Arc<dyn serin::webhook::Webhooks>,
    ) {
        let config = serin::controller::Config {
            observe: ObserveConfig {
                mesh_provider: provider.into(),
                min_interval: Duration::from_secs(1),
                ..ObserveConfig::default()
            },
            namespace: Some(NS.into()),
            listen: None,
        };
        let providers = serin::controller::Providers {
            metrics,
            routers,
            webhooks,
            notifier: Arc::new(serin::notifier::LogNotifier),
        };
        let client = self.controller_client();
        self.tasks.push(tokio::spawn(async move {
            if let Err(e) = serin::controller::run_with(client, config, providers).await {
                eprintln!("controller stopped: {e}");
            }
        }));
    }

    /// A client that identifies as the controller (its User-Agent), so that the RBAC check
    /// at drop can tell the controller's requests from the test's.
    pub fn controller_client(&self) -> Client {
        let url = self
            ._cluster
            .url()
            .parse::<http::Uri>()
            .expect("cluster URL");
        let mut config = kube::Config::new(url);
        config.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static("serin-controller/in-process"),
        ));
        Client::try_from(config).expect("controller client")
    }

    /// A Gateway controller stand-in: accepts every HTTPRoute's parents for its current generation.
    pub fn start_gateway(&mut self) {
        self.start_gateway_accepting(Arc::new(std::sync::atomic::AtomicBool::new(true)));
    }

    /// A Gateway controller stand-in that writes each parent's `Accepted` condition: `True`
    /// while `accept` is set, else `False` with reason `NotAllowedByListeners` (what a Gateway
    /// writes for a route its listeners do not allow), always for the current generation.
    pub fn start_gateway_accepting(&mut self, accept: Arc<std::sync::atomic::AtomicBool>) {
        let api = self.dynamic(GW_V1, "HTTPRoute");
        let never = Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.tasks.push(super::gateway::spawn(api, accept, never));
    }

    /// The namespaced objects of `kind` in `api_version`.
    pub fn dynamic(&self, api_version: &str, kind: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), NS, &ar(api_version, kind))
    }

    /// Records every distinct value `read` extracts from the object, in order.
    pub fn record(
        &mut self,
        api_version: &str,
        kind: &str,
        name: &str,
        read: fn(&Value) -> Option<Value>,
    ) -> Arc<Mutex<Vec<Value>>> {
        let api = self.dynamic(api_version, kind);
        let seen = Arc::new(Mutex::new(Vec::<Value>::new()));
        let out = seen.clone();
        let name = name.to_string();
        self.tasks.push(tokio::spawn(async move {
            loop {
                if let Ok(Some(o)) = api.get_opt(&name).await
                    && let Some(v) = read(&serde_json::to_value(&o).unwrap_or_default())
                    && let Ok(mut s) = seen.lock()
                    && s.last() != Some(&v)
                {
                    s.push(v);
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        }));
        out
    }

    /// Server-side applies `obj` (in `NS`), taking its resource from `apiVersion` and `kind`.
    pub async fn apply(&self, obj: Value) -> anyhow::Result<()> {
        super::e2e::apply(&self.client, obj).await
    }

    /// The object as JSON.
    pub async fn get(&self, api_version: &str, kind: &str, name: &str) -> anyhow::Result<Value> {
        Ok(serde_json::to_value(
            self.dynamic(api_version, kind).get(name).await?,
        )?)
    }

    /// A user's edit, as `kubectl patch --type=json` sends it (an update, not an apply).
    pub async fn json_patch(
        &self,
        api_version: &str,
        kind: &str,
        name: &str,
        ops: Value,
    ) -> anyhow::Result<()> {
        let patch: json_patch::Patch = serde_json::from_value(ops)?;
        self.dynamic(api_version, kind)
            .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await?;
        Ok(())
    }

    /// Waits until Canary `podinfo` reaches `phase`.
    pub async fn wait_phase(&self, phase: CanaryPhase, secs: u64) -> anyhow::Result<Canary> {
        let api: Api<Canary> = Api::namespaced(self.client.clone(), NS);
        eventually(secs, &format!("canary to reach {phase}"), || async {
            let c = api.get("podinfo").await?;
            Ok((c.status.as_ref().and_then(|s| s.phase) == Some(phase)).then_some(c))
        })
        .await
    }
}

/// Polls `check` every 50 ms until it yields a value or `secs` pass.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    super::e2e::poll_until(Duration::from_millis(50), secs, what, check).await
}

/// `[primary, canary]` weights of the HTTPRoute rule routing to both Services.
pub fn httproute_weights(v: &Value) -> Option<Value> {
    let rules = v["spec"]["rules"].as_array()?;
    let rule = rules
        .iter()
        .rev()
        .find(|r| r["backendRefs"].as_array().is_some_and(|b| b.len() == 2))?;
    Some(json!([
        rule["backendRefs"][0]["weight"],
        rule["backendRefs"][1]["weight"]
    ]))
}

/// `[primary, canary]` pairs as recorded by `httproute_weights`-style readers.
pub fn weights(pairs: &[(i32, i32)]) -> Vec<Value> {
    pairs.iter().map(|(p, c)| json!([p, c])).collect()
}

/// What a recorder has seen so far.
pub fn seen(r: &Arc<Mutex<Vec<Value>>>) -> Vec<Value> {
    r.lock().map(|v| v.clone()).unwrap_or_default()
}
