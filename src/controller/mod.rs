//! The canary controller: watches Canaries and their workloads, and reconciles them by
//! observe → plan → act → record. This module wires kube-runtime and does the I/O.
use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::controller::{Action as KubeAction, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use std::sync::Arc;
use std::time::Duration;

use crate::api::Canary;
use crate::api::webhook_type::WebhookType;
use crate::metrics::MetricsChecker;
use crate::notifier::Notifier;
use crate::webhook::Webhooks;

pub mod act;
pub mod client;
pub mod fence;
pub mod heap;
pub mod index;
pub mod leader;
pub mod observe;
pub mod telemetry;

pub use crate::core::{plan, readiness, workload};

use observe::{ObserveConfig, Stores};
use plan::{CheckRequest, Checks, Requeue, Step};

/// Controller errors. Variants name the action that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing the Canary status failed.
    #[error("cannot patch canary status: {0}")]
    PatchStatus(#[source] kube::Error),
    /// Adding or removing the finalizer failed.
    #[error("cannot patch canary finalizers: {0}")]
    PatchFinalizer(#[source] kube::Error),
    /// Applying a generated object failed.
    #[error("cannot apply a generated object: {0}")]
    Apply(#[source] kube::Error),
    /// Scaling the target failed.
    #[error("cannot scale the target: {0}")]
    Scale(#[source] kube::Error),
    /// A router call failed.
    #[error(transparent)]
    Router(#[from] crate::router::Error),
    /// An object could not be encoded.
    #[error("cannot encode an object: {0}")]
    Encode(#[source] serde_json::Error),
    /// The Flagger CRDs are not installed.
    #[error("the flagger.app CRDs are not installed (kubectl apply -f crds/): {0}")]
    CrdsMissing(#[source] kube::Error),
}

impl Error {
    /// Whether retrying cannot help until something changes (the Canary, its target, RBAC): the
    /// API refused a write as malformed, invalid or forbidden, a routing spec is invalid, or an
    /// object cannot be encoded. Conflicts, throttling, timeouts, 5xx and missing objects are
    /// transient.
    pub fn is_permanent(&self) -> bool {
        fn refused(e: &kube::Error) -> bool {
            matches!(e, kube::Error::Api(s) if matches!(s.code, 400 | 403 | 422))
        }
        match self {
            Self::PatchStatus(e) | Self::PatchFinalizer(e) | Self::Apply(e) | Self::Scale(e) => {
                refused(e)
            }
            Self::Router(crate::router::Error::Api(e)) => refused(e),
            Self::Router(crate::router::Error::Invalid(_)) | Self::Encode(_) => true,
            Self::Router(_) | Self::CrdsMissing(_) => false,
        }
    }

    /// A short label for metrics and event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Self::PatchStatus(_) => "PatchStatus",
            Self::PatchFinalizer(_) => "PatchFinalizer",
            Self::Apply(_) => "Apply",
            Self::Scale(_) => "Scale",
            Self::Router(_) => "Router",
            Self::Encode(_) => "Encode",
            Self::CrdsMissing(_) => "CrdsMissing",
        }
    }
}

/// Settings of a controller run.
#[derive(Clone, Debug)]
pub struct Config {
    /// What observation needs (provider default, minimum interval, labels, config tracking).
    pub observe: ObserveConfig,
    /// Namespace to watch; all when `None`.
    pub namespace: Option<String>,
    /// Address for /healthz, /readyz and /metrics; none when `None`.
    pub listen: Option<std::net::SocketAddr>,
}

/// How many reconciles run at once. kube's client speaks HTTP/1, one connection per request in
/// flight: unbounded, the init of 10,000 Canaries held up to 13,283 open fds and 5,891 reconciles
/// failed to reach the API server (measured with `serin bench`, docs/performance.md). Reconciles that wait
/// for slow metric providers or webhooks hold a slot, so the bound is generous.
pub const MAX_CONCURRENT_RECONCILES: u16 = 512;

/// Shared state of the reconcilers.
pub struct Context {
    /// API client.
    pub client: kube::Client,
    /// Settings.
    pub config: Config,
    /// Caches.
    pub stores: Stores,
    /// Event recorder.
    pub recorder: Recorder,
    /// Metrics, webhooks, notifications and routers.
    pub providers: Providers,
    /// Prometheus metrics of the controller.
    pub telemetry: telemetry::Telemetry,
    /// Status writes the Canary cache may not have seen yet.
    pub recent_writes: RecentWrites,
    /// Consecutive failed reconciles per Canary, for the backoff of transient errors.
    pub failures: Failures,
    /// When each Progressing Canary last ran an analysis tick, to measure tick lag.
    pub ticks: Ticks,
    /// Generated objects this process applied, until the caches show them.
    pub applied: act::Applied,
    /// Set once every cache has listed its objects; until then nothing is decided, because a
    /// half-filled cache looks like a changed (or missing) target.
    pub caches_ready: Arc<std::sync::atomic::AtomicBool>,
}

fn api<K>(client: &kube::Client, ns: &Option<String>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A status write: the resourceVersion and status the server returned, and when.
type Written = (String, Option<crate::api::CanaryStatus>, std::time::Instant);

/// Remembers the resourceVersion and status of each Canary status write until the cache shows
/// it, so that a reconcile never decides on a status older than one it wrote itself. A cached
/// object that differs in resourceVersion but carries the same status (a spec edit, say) is not
/// stale; entries older than a few seconds are dropped so that another writer cannot wedge us.
#[derive(Default)]
pub struct RecentWrites {
    writes: std::sync::Mutex<std::collections::HashMap<String, Written>>,
}

impl RecentWrites {
    fn key(c: &Canary) -> String {
        c.metadata
            .uid
            .clone()
            .unwrap_or_else(|| format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any()))
    }

    /// Records a Canary as returned by a status write.
    pub fn remember(&self, written: &Canary) {
        let mut w = self
            .writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        w.insert(
            Self::key(written),
            (
                written.resource_version().unwrap_or_default(),
                written.status.clone(),
                std::time::Instant::now(),
            ),
        );
    }

    /// True when `cached` predates our last status write for it.
    pub fn is_stale(&self, cached: &Canary) -> bool {
        let mut w = self
            .writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = Self::key(cached);
        let Some((rv, status, at)) = w.get(&key) else {
            return false;
        };
        let caught_up =
            cached.resource_version().as_deref() == Some(rv.as_str()) || cached.status == *status;
        if caught_up || at.elapsed() > Duration::from_secs(5) {
            w.remove(&key);
            return false;
        }
        true
    }
}

/// The I/O seams the controller acts through; each has a do-nothing implementation.
#[derive(Clone)]
pub struct Providers {
    /// Metric checks.
    pub metrics: Arc<dyn MetricsChecker>,
    /// Webhooks.
    pub webhooks: Arc<dyn Webhooks>,
    /// Alerts.
    pub notifier: Arc<dyn Notifier>,
    /// Settings the routers need.
    pub routers: crate::router::RouterConfig,
}

/// Drops what no decision reads before an object enters a cache: `managedFields` is often the
/// largest part of an object, and the controller writes with server-side apply, so it never reads
/// field ownership back; kubectl's `last-applied-configuration` annotation repeats the whole
/// object, and the builders drop it from every copy they make.
fn strip_unused_metadata<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(crate::target::service::LAST_APPLIED_ANNOTATION);
    }
}

/// A Secret's data is read only to checksum and copy a Secret that config tracking follows;
/// the others (service-account tokens, Helm release records, TLS keys, opted-out Secrets) are
/// cached without it.
fn strip_secret(s: &mut Secret) {
    strip_unused_metadata(s);
    if !crate::target::configs::is_tracked_secret(s) {
        s.data = None;
        s.string_data = None;
    }
}

/// As [`strip_secret`], for ConfigMaps that opted out of tracking.
fn strip_configmap(c: &mut ConfigMap) {
    strip_unused_metadata(c);
    if !crate::target::configs::is_tracked_configmap(c) {
        c.data = None;
        c.binary_data = None;
    }
}

/// A reflector over `K` in the watched namespace (all when `None`): its cache, and the stream of
/// changed objects that wakes the Canaries watching them.
fn reflect<K>(
    client: &kube::Client,
    ns: &Option<String>,
    wc: &watcher::Config,
    strip: fn(&mut K),
) -> (
    reflector::Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    let stream = watcher(api::<K>(client, ns), wc.clone())
        .default_backoff()
        .modify(strip)
        .reflect(writer)
        .touched_objects();
    (reader, stream)
}

/// Who records the controller's events.
pub fn reporter() -> Reporter {
    Reporter {
        controller: "serin".into(),
        instance: std::env::var("POD_NAME").ok(),
    }
}

/// Runs the controller with the given providers, serving its metrics on `config.listen`.
pub async fn run_with(
    client: kube::Client,
    config: Config,
    providers: Providers,
) -> Result<(), Error> {
    let telemetry = start_telemetry(&config, &providers);
    telemetry.set_leader(true);
    run_with_telemetry(client, config, providers, telemetry).await
}

/// Creates the controller's metrics and serves /healthz, /readyz and /metrics on
/// `config.listen` in the background. With leader election this starts before the election, so
/// a standby is healthy, ready and exports `serin_leader 0` (and no per-canary gauges: those are
/// only set by reconciles, which a standby never runs).
pub fn start_telemetry(config: &Config, providers: &Providers) -> telemetry::Telemetry {
    let telemetry = telemetry::Telemetry::new(
        &config.observe.mesh_provider,
        providers.notifier.delivery_counters(),
    );
    if let Some(addr) = config.listen {
        let t = telemetry.clone();
        tokio::spawn(async move {
            if let Err(e) = telemetry::serve(addr, t).await {
                tracing::error!("metrics server stopped: {e}");
            }
        });
    }
    telemetry
}

/// Runs the controller with the given providers and metrics (already served), until it is
/// stopped by SIGTERM/SIGINT or the returned future is dropped.
pub async fn run_with_telemetry(
    client: kube::Client,
    config: Config,
    providers: Providers,
    telemetry: telemetry::Telemetry,
) -> Result<(), Error> {
    let canaries: Api<Canary> = api(&client, &config.namespace);
    canaries
        .list(&ListParams::default().limit(1))
        .await
        .map_err(Error::CrdsMissing)?;
    for kind in ["metrictemplates", "alertproviders"] {
        let ar = kube::core::ApiResource {
            group: "flagger.app".into(),
            version: "v1beta1".into(),
            api_version: "flagger.app/v1beta1".into(),
            kind: String::new(),
            plural: kind.into(),
        };
        let dynapi: Api<kube::api::DynamicObject> = match &config.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        dynapi
            .list(&ListParams::default().limit(1))
            .await
            .map_err(Error::CrdsMissing)?;
    }

    let wc = watcher::Config::default();
    let ns = config.namespace.clone();
    let (deploy_reader, deploy_stream) =
        reflect::<Deployment>(&client, &ns, &wc, strip_unused_metadata);
    let (ds_reader, ds_stream) = reflect::<DaemonSet>(&client, &ns, &wc, strip_unused_metadata);
    let (sts_reader, sts_stream) = reflect::<StatefulSet>(&client, &ns, &wc, strip_unused_metadata);
    let (svc_reader, svc_stream) = reflect::<Service>(&client, &ns, &wc, strip_unused_metadata);
    let (cm_reader, cm_stream) = reflect::<ConfigMap>(&client, &ns, &wc, strip_configmap);
    let (secret_reader, secret_stream) = reflect::<Secret>(&client, &ns, &wc, strip_secret);
    let (hpa_reader, hpa_stream) =
        reflect::<HorizontalPodAutoscaler>(&client, &ns, &wc, strip_unused_metadata);
    let knative_ar = crate::router::knative::resource();
    let knative_writer = reflector::store::Writer::<DynamicObject>::new(knative_ar.clone());
    let knative_reader = knative_writer.as_reader();
    let keda_ar = observe::keda_resource();
    let keda_writer = reflector::store::Writer::<DynamicObject>::new(keda_ar.clone());
    let keda_reader = keda_writer.as_reader();
    let stores = Stores {
        deployments: deploy_reader,
        daemonsets: ds_reader,
        statefulsets: sts_reader,
        services: svc_reader,
        configmaps: cm_reader,
        secrets: secret_reader,
        hpas: hpa_reader,
        knative_services: knative_reader,
        knative_synced: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        scaled_objects: keda_reader,
        scaled_objects_synced: Arc::new(std::sync::atomic::AtomicBool::new(false)),
    };

    let reporter = reporter();
    let ctx = Arc::new(Context {
        client: client.clone(),
        config: config.clone(),
        stores: stores.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        providers,
        telemetry,
        caches_ready: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        recent_writes: RecentWrites::default(),
        failures: Failures::default(),
        ticks: Ticks::default(),
        applied: act::Applied::default(),
    });
    {
        let (stores, ready) = (stores.clone(), ctx.caches_ready.clone());
        tokio::spawn(async move {
            let waits = (
                stores.deployments.wait_until_ready(),
                stores.daemonsets.wait_until_ready(),
                stores.services.wait_until_ready(),
                stores.configmaps.wait_until_ready(),
                stores.secrets.wait_until_ready(),
                stores.hpas.wait_until_ready(),
                stores.statefulsets.wait_until_ready(),
            );
            let (a, b, c, d, e, f, g) = futures::join!(
                waits.0, waits.1, waits.2, waits.3, waits.4, waits.5, waits.6
            );
            if [a, b, c, d, e, f, g].iter().all(Result::is_ok) {
                ready.store(true, std::sync::atomic::Ordering::Release);
                tracing::info!("caches synced");
            }
        });
        let (store, synced) = (
            stores.knative_services.clone(),
            stores.knative_synced.clone(),
        );
        tokio::spawn(async move {
            if store.wait_until_ready().await.is_ok() {
                synced.store(true, std::sync::atomic::Ordering::Release);
                tracing::info!("Knative Services listed");
            }
        });
        let (store, synced) = (
            stores.scaled_objects.clone(),
            stores.scaled_objects_synced.clone(),
        );
        tokio::spawn(async move {
            if store.wait_until_ready().await.is_ok() {
                synced.store(true, std::sync::atomic::Ordering::Release);
                tracing::info!("KEDA ScaledObjects listed");
            }
        });
    }

    // The Canary cache is stripped like the others (a Canary's managedFields, with the
    // controller's status ownership, are as large as its spec).
    let (canary_store, canary_writer) = reflector::store::<Canary>();
    let canary_index = index::CanaryIndex::default();
    let canary_stream = {
        let index = canary_index.clone();
        watcher(canaries, wc.clone())
            .default_backoff()
            .modify(strip_unused_metadata)
            .reflect(canary_writer)
            .inspect(move |ev| {
                if let Ok(ev) = ev {
                    index.apply(ev);
                }
            })
            .applied_objects()
    };
    let controller = Controller::for_stream(canary_stream, canary_store.clone()).with_config(
        kube::runtime::controller::Config::default().concurrency(MAX_CONCURRENT_RECONCILES),
    );
    // Stops with the controller (also when a lost lease drops this future).
    let _metrics_sync = {
        // flagger_canary_total, and a deleted Canary's series leave /metrics.
        let (store, telemetry) = (canary_store.clone(), ctx.telemetry.clone());
        AbortOnDrop(tokio::spawn(async move {
            if store.wait_until_ready().await.is_err() {
                return;
            }
            loop {
                let canaries = store.state();
                telemetry.sync_canaries(canaries.iter().map(AsRef::as_ref));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }))
    };
    // Knative Serving is often not installed: its Services are watched only once a Canary
    // targets one (an idle controller makes no requests), and a failing list is retried with
    // backoff.
    let knative_api: Api<DynamicObject> = match &ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &knative_ar),
        None => Api::all_with(client.clone(), &knative_ar),
    };
    let knative_stream = {
        let (store, wc) = (canary_store.clone(), wc.clone());
        futures::stream::once(async move {
            while !store.state().iter().any(|c| {
                c.spec
                    .target_ref
                    .as_ref()
                    .is_some_and(|t| t.is_knative_service())
            }) {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            watcher(knative_api, wc)
                .default_backoff()
                .modify(strip_unused_metadata)
                .reflect(knative_writer)
                .touched_objects()
        })
        .flatten()
    };

    // KEDA is often not installed either: its ScaledObjects are watched once a Canary's
    // autoscaler is one.
    let keda_api: Api<DynamicObject> = match &ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &keda_ar),
        None => Api::all_with(client.clone(), &keda_ar),
    };
    let keda_stream = {
        let (store, wc) = (canary_store.clone(), wc.clone());
        futures::stream::once(async move {
            while !store.state().iter().any(|c| uses_scaled_object(c)) {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            watcher(keda_api, wc)
                .default_backoff()
                .modify(strip_unused_metadata)
                .reflect(keda_writer)
                .touched_objects()
        })
        .flatten()
    };

    // Each workload, Service, ConfigMap or Secret event finds its Canaries in the index, not
    // by scanning every cached Canary (at 10,000 Canaries a rollout's events made that scan
    // quadratic).
    let by_workload = {
        let index = canary_index.clone();
        move |name: String, ns: Option<String>| index.by_workload(ns.as_deref(), &name)
    };
    let in_namespace = {
        let index = canary_index.clone();
        move |ns: Option<String>| index.in_namespace(ns.as_deref())
    };
    let m1 = by_workload.clone();
    let m2 = by_workload.clone();
    let m3 = by_workload.clone();
    let m4 = by_workload.clone();
    let m5 = by_workload.clone();
    let m6 = by_workload.clone();
    let n1 = in_namespace.clone();
    let n2 = in_namespace.clone();
    let by_service = canary_index.clone();

    controller
        .watches_stream(deploy_stream, move |d| m1(d.name_any(), d.namespace()))
        .watches_stream(ds_stream, move |d| m2(d.name_any(), d.namespace()))
        .watches_stream(sts_stream, move |s| m5(s.name_any(), s.namespace()))
        .watches_stream_with(
            keda_stream,
            move |s| m6(s.name_any(), s.namespace()),
            keda_ar.clone(),
        )
        .watches_stream(hpa_stream, move |h| m3(h.name_any(), h.namespace()))
        .watches_stream_with(
            knative_stream,
            move |s| m4(s.name_any(), s.namespace()),
            knative_ar.clone(),
        )
        .watches_stream(svc_stream, move |s| {
            // Generated Services are owned by their Canary; others may be a pre-existing apex.
            by_service.by_service(s.namespace().as_deref(), &s.name_any())
        })
        .watches_stream(cm_stream, move |c| n1(c.namespace()))
        .watches_stream(secret_stream, move |s| n2(s.namespace()))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!("reconcile: {e}");
            }
        })
        .await;
    Ok(())
}

/// Aborts a background task when the future that started it ends or is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why the router could not report the split: a Gateway API router is `NotReady` only while a
/// Gateway has not accepted the HTTPRoute (`router::gatewayapi::check_accepted`).
fn route_problem(
    provider: Option<crate::api::Provider>,
    e: crate::router::Error,
) -> plan::RouteProblem {
    match e {
        crate::router::Error::NotReady(m) if provider.is_some_and(|p| p.is_gateway_api()) => {
            plan::RouteProblem::NotAccepted(m)
        }
        e => plan::RouteProblem::NotReady(e.to_string()),
    }
}

/// One reconcile: observe from caches, plan (asking checks as needed), act, record.
#[tracing::instrument(skip(canary, ctx), fields(namespace = canary.namespace().unwrap_or_default(), name = canary.name_any()))]
pub async fn reconcile(canary: Arc<Canary>, ctx: Arc<Context>) -> Result<KubeAction, Error> {
    if !ctx.caches_ready.load(std::sync::atomic::Ordering::Acquire) {
        return Ok(KubeAction::requeue(Duration::from_millis(200)));
    }
    if ctx.recent_writes.is_stale(&canary) {
        // Our own status write has not reached the cache yet: deciding on the older status
        // would repeat or undo the step just taken.
        return Ok(KubeAction::requeue(Duration::from_millis(100)));
    }
    let _timer = ctx.telemetry.reconcile_timer();
    let _canary_timer = ctx.telemetry.canary_timer(&canary);
    let now = Utc::now();
    if canary.metadata.deletion_timestamp.is_some() && !target_cache_is_fresh(&ctx, &canary).await {
        // Restoring the target decides when the apex Service may switch to it: that decision
        // is made on the live object, never on a lagging cache.
        return Ok(KubeAction::requeue(Duration::from_millis(200)));
    }
    let mut observed = observe::observe(&ctx.config.observe, &ctx.stores, &canary, now);
    if canary.metadata.deletion_timestamp.is_some() {
        observed.target_ready_pods = target_ready_pods(&ctx, &canary).await;
    }
    let router = observed
        .provider
        .map(|p| crate::router::for_provider(p, &ctx.client, &ctx.providers.routers))
        .transpose();
    let router = match router {
        Ok(r) => r.unwrap_or_else(|| Arc::new(crate::router::kubernetes::KubernetesRouter)),
        Err(e) => {
            // Validation accepts every provider name Flagger knows; a provider whose router
            // is not built yet is reported on the Canary like any other bad input.
            observed.problems.push(crate::api::validation::Problem {
                severity: crate::api::validation::Severity::Error,
                path: "spec.provider".into(),
                message: e.to_string(),
            });
            Arc::new(crate::router::kubernetes::KubernetesRouter)
        }
    };
    // While a run is in progress the router must be able to report the live split.
    let running = canary
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(|p| p.is_running());
    if running && observed.problems.is_empty() {
        observed.routes = Some(
            router
                .routes(&canary)
                .await
                .map_err(|e| route_problem(observed.provider, e)),
        );
    }
    let mut checks = Checks::default();
    let plan = loop {
        match plan::plan(&observed, &checks, now) {
            Step::Done(p) => break *p,
            Step::Need(req) => answer(&ctx, &canary, req, &mut checks).await,
        }
    };
    let label = observed.target.as_ref().ok().map(|t| t.selector.clone());
    let actuator = act::Actuator {
        client: &ctx.client,
        recorder: &ctx.recorder,
        router,
        webhooks: ctx.providers.webhooks.clone(),
        notifier: ctx.providers.notifier.clone(),
        label,
        applied: Some((&ctx.applied, &ctx.stores)),
        held_back: std::sync::atomic::AtomicBool::new(false),
    };
    let written = actuator.execute(&canary, &plan).await?;
    ctx.failures.clear(&canary);
    if let Some(status) = &plan.status {
        ctx.telemetry
            .observe_status(&canary, status, observed.provider);
    }
    if let Some(w) = written {
        ctx.recent_writes.remember(&w);
    }
    if let Some(lag) = ctx
        .ticks
        .record(&canary, plan.status.as_ref(), observed.interval, now)
    {
        ctx.telemetry.observe_tick_lag(lag);
    }
    let knative_unlisted = canary
        .spec
        .target_ref
        .as_ref()
        .is_some_and(|t| t.is_knative_service())
        && !ctx
            .stores
            .knative_synced
            .load(std::sync::atomic::Ordering::Acquire);
    let keda_unlisted = uses_scaled_object(&canary)
        && !ctx
            .stores
            .scaled_objects_synced
            .load(std::sync::atomic::Ordering::Acquire);
    let held_back = actuator
        .held_back
        .load(std::sync::atomic::Ordering::Relaxed);
    Ok(match plan.requeue {
        // The Knative and KEDA watches start with the first Canary that needs them; look again
        // once they have listed.
        _ if knative_unlisted || keda_unlisted => KubeAction::requeue(Duration::from_secs(2)),
        // An apply waits for the cache to show our last one; look again if no event comes.
        Requeue::AwaitChange if held_back => KubeAction::requeue(Duration::from_secs(1)),
        Requeue::After(d) if held_back => {
            KubeAction::requeue(d.clamp(Duration::from_millis(100), Duration::from_secs(1)))
        }
        Requeue::AwaitChange => KubeAction::await_change(),
        Requeue::After(d) => KubeAction::requeue(d.max(Duration::from_millis(100))),
    })
}

/// Whether the Canary's autoscaler is a KEDA ScaledObject.
fn uses_scaled_object(canary: &Canary) -> bool {
    canary
        .spec
        .autoscaler_ref
        .as_ref()
        .is_some_and(|a| a.kind == "ScaledObject")
}

/// The target workload's ready, not terminating Pods, listed live by its `matchLabels`; `None`
/// for other targets, selectors with expressions, or when the list fails (then the workload's
/// status alone decides, as before).
async fn target_ready_pods(ctx: &Context, canary: &Canary) -> Option<u32> {
    let t = canary.spec.target_ref.as_ref()?;
    let ns = canary.namespace().unwrap_or_default();
    let selector = match t.kind.as_str() {
        "Deployment" => ctx
            .stores
            .deployments
            .get(&ObjectRef::new(&t.name).within(&ns))
            .map(|d| d.spec.selector.clone()),
        "DaemonSet" => ctx
            .stores
            .daemonsets
            .get(&ObjectRef::new(&t.name).within(&ns))
            .map(|d| d.spec.selector.clone()),
        "StatefulSet" => ctx
            .stores
            .statefulsets
            .get(&ObjectRef::new(&t.name).within(&ns))
            .map(|s| s.spec.selector.clone()),
        _ => None,
    }?;
    if selector
        .match_expressions
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        return None;
    }
    let labels: Vec<String> = selector
        .match_labels
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if labels.is_empty() {
        return None;
    }
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(ctx.client.clone(), &ns)
        .list(&kube::api::ListParams::default().labels(&labels.join(",")))
        .await;
    match pods {
        Ok(list) => Some(
            list.items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                })
                .count() as u32,
        ),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the target's pods; relying on its status");
            None
        }
    }
}

/// True when the cached target has the live object's resourceVersion (or there is no target).
async fn target_cache_is_fresh(ctx: &Context, canary: &Canary) -> bool {
    let Some(t) = canary.spec.target_ref.as_ref() else {
        return true;
    };
    let ns = canary.namespace().unwrap_or_default();
    let (cached, live) = match t.kind.as_str() {
        "Deployment" => {
            live_version::<Deployment>(ctx, &ctx.stores.deployments, &ns, &t.name).await
        }
        "DaemonSet" => live_version::<DaemonSet>(ctx, &ctx.stores.daemonsets, &ns, &t.name).await,
        "StatefulSet" => {
            live_version::<StatefulSet>(ctx, &ctx.stores.statefulsets, &ns, &t.name).await
        }
        _ => return true,
    };
    match live {
        Ok(live) => live == cached,
        Err(_) => false,
    }
}

/// The cached and the live resourceVersion of `ns/name`.
async fn live_version<K>(
    ctx: &Context,
    store: &kube::runtime::reflector::Store<K>,
    ns: &str,
    name: &str,
) -> (Option<String>, Result<Option<String>, kube::Error>)
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + 'static,
{
    let cached = observe::cached_version(store, ns, name);
    let live = Api::<K>::namespaced(ctx.client.clone(), ns)
        .get_opt(name)
        .await
        .map(|o| o.and_then(|d| d.resource_version()));
    (cached, live)
}

async fn answer(ctx: &Context, canary: &Canary, req: CheckRequest, checks: &mut Checks) {
    let phase = canary.status.as_ref().and_then(|s| s.phase);
    let hooks = &ctx.providers.webhooks;
    // A failed hook's decision record goes to `status.checks`; the plan decides when.
    let mut note = |r: Result<(), crate::webhook::HookFailure>| match r {
        Ok(()) => Ok(()),
        Err(f) => {
            checks.hook_records.extend(f.record);
            Err(f.message)
        }
    };
    match req {
        CheckRequest::ConfirmRollout => {
            let r = note(hooks.gate(canary, WebhookType::ConfirmRollout, phase).await);
            checks.confirm_rollout = Some(r.is_ok())
        }
        CheckRequest::Rollback => {
            checks.rollback = Some(hooks.rollback_requested(canary, phase).await)
        }
        CheckRequest::PreRollout => {
            let r = note(hooks.run(canary, WebhookType::PreRollout, phase).await);
            checks.pre_rollout = Some(r)
        }
        CheckRequest::Analysis => {
            let r = note(hooks.run(canary, WebhookType::Rollout, phase).await);
            checks.analysis = Some(match r {
                Ok(()) => {
                    let report = ctx.providers.metrics.check(canary).await;
                    ctx.telemetry.observe_checks(canary, &report.records);
                    Ok(report)
                }
                Err(e) => Err(e),
            });
        }
        CheckRequest::ConfirmTrafficIncrease => {
            let r = note(
                hooks
                    .gate(canary, WebhookType::ConfirmTrafficIncrease, phase)
                    .await,
            );
            checks.confirm_traffic_increase = Some(r.is_ok())
        }
        CheckRequest::ConfirmPromotion => {
            let r = note(
                hooks
                    .gate(canary, WebhookType::ConfirmPromotion, phase)
                    .await,
            );
            checks.confirm_promotion = Some(r.is_ok())
        }
    }
}

/// The instant of the last analysis tick of each Progressing Canary, in memory: the status keeps
/// `lastAnalysisTime` in whole seconds only, too coarse to tell how late a tick ran.
#[derive(Default)]
pub struct Ticks(std::sync::Mutex<std::collections::HashMap<u64, chrono::DateTime<Utc>>>);

impl Ticks {
    fn key(c: &Canary) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        c.metadata.uid.hash(&mut h);
        c.namespace().hash(&mut h);
        c.name_any().hash(&mut h);
        h.finish()
    }

    /// Notes a reconcile that wrote `status` at `now`; returns how late the analysis tick it ran
    /// was, when it ran one that was due an interval after a tick seen by this process.
    pub fn record(
        &self,
        canary: &Canary,
        status: Option<&crate::api::CanaryStatus>,
        interval: Duration,
        now: chrono::DateTime<Utc>,
    ) -> Option<Duration> {
        use crate::api::time::from_time;
        let status = status?;
        let key = Self::key(canary);
        let mut ticks = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if status.phase != Some(crate::api::CanaryPhase::Progressing) {
            ticks.remove(&key);
            return None;
        }
        // A tick stamps `lastAnalysisTime` with the reconcile's `now`.
        let ticked = status
            .last_analysis_time
            .as_ref()
            .is_some_and(|t| from_time(t) == now);
        if !ticked {
            return None;
        }
        let previous = ticks.insert(key, now)?;
        let was_progressing = canary.status.as_ref().and_then(|s| s.phase)
            == Some(crate::api::CanaryPhase::Progressing);
        let due = previous + chrono::Duration::from_std(interval).ok()?;
        was_progressing.then(|| (now - due).to_std().unwrap_or_default())
    }
}

/// Consecutive failed reconciles per Canary (`namespace/name`); a success clears the count.
#[derive(Default)]
pub struct Failures(std::sync::Mutex<std::collections::HashMap<String, u32>>);

impl Failures {
    fn key(c: &Canary) -> String {
        format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any())
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, u32>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one more failure; returns how many in a row.
    pub fn record(&self, c: &Canary) -> u32 {
        let mut counts = self.counts();
        let n = counts.entry(Self::key(c)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    /// Forgets the failures of a Canary that reconciled.
    pub fn clear(&self, c: &Canary) {
        let mut counts = self.counts();
        if !counts.is_empty() {
            counts.remove(&Self::key(c));
        }
    }
}

/// The wait before retrying after `failures` transient errors in a row: 2 s, doubling, at most
/// 60 s, so a flaky API server is retried promptly and an unreachable one is not hammered.
pub fn transient_backoff(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(5));
    Duration::from_secs(2)
        .saturating_mul(factor)
        .min(Duration::from_secs(60))
}

/// How long a permanent error waits for a change before the safety-net retry (a fix such as an
/// RBAC rule does not touch the Canary, so it would never wake it).
pub const PERMANENT_RETRY: Duration = Duration::from_secs(300);

/// Every failure is counted by category. A permanent error (the API refused the write, the spec
/// is invalid) is reported once as a Warning Event and waits for a change, retried only after
/// [`PERMANENT_RETRY`]; a transient one retries with [`transient_backoff`].
pub fn error_policy(canary: Arc<Canary>, error: &Error, ctx: Arc<Context>) -> KubeAction {
    ctx.telemetry.reconcile_failure(error.category());
    let failures = ctx.failures.record(&canary);
    if error.is_permanent() {
        tracing::warn!(
            canary = canary.name_any(),
            category = error.category(),
            "reconcile failed permanently, waiting for a change: {error}"
        );
        if failures == 1 {
            let (client, canary, note) = (ctx.client.clone(), canary.clone(), error.to_string());
            let reason = format!("{}Failed", error.category());
            tokio::spawn(async move {
                let recorder = Recorder::new(client, reporter());
                let ev = kube::runtime::events::Event {
                    type_: kube::runtime::events::EventType::Warning,
                    reason,
                    note: Some(note),
                    action: "Reconcile".into(),
                    secondary: None,
                };
                if let Err(e) = recorder.publish(&ev, &canary.object_ref(&())).await {
                    tracing::warn!("cannot record event: {e}");
                }
            });
        }
        return KubeAction::requeue(PERMANENT_RETRY);
    }
    let wait = transient_backoff(failures);
    tracing::warn!(
        canary = canary.name_any(),
        category = error.category(),
        failures,
        "reconcile failed, retrying in {}s: {error}",
        wait.as_secs()
    );
    KubeAction::requeue(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            ..Default::default()
        }))
    }

    #[test]
    fn refused_writes_and_invalid_specs_are_permanent_the_rest_transient() {
        for code in [400, 403, 422] {
            assert!(Error::Apply(api_error(code)).is_permanent(), "{code}");
            assert!(Error::Router(crate::router::Error::Api(api_error(code))).is_permanent());
        }
        for code in [404, 409, 429, 500, 503] {
            assert!(
                !Error::PatchStatus(api_error(code)).is_permanent(),
                "{code}"
            );
        }
        assert!(Error::Router(crate::router::Error::Invalid("x".into())).is_permanent());
        assert!(!Error::Router(crate::router::Error::NotReady("x".into())).is_permanent());
    }

    #[test]
    fn transient_retries_double_from_two_seconds_up_to_a_minute() {
        let waits: Vec<u64> = (1..=8).map(|n| transient_backoff(n).as_secs()).collect();
        assert_eq!(waits, vec![2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn a_success_clears_the_failure_count() {
        let c = Canary::new("podinfo", Default::default());
        let f = Failures::default();
        assert_eq!(f.record(&c), 1);
        assert_eq!(f.record(&c), 2);
        f.clear(&c);
        assert_eq!(f.record(&c), 1);
    }
}
