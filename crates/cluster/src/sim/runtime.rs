//! The simulators' runners (network I/O): watch caches fed by kube-runtime reflectors, one loop per
//! controller that plans with the pure modules and writes through the kube-rs `Api`, exactly as a
//! controller-manager talks to an API server.
use super::events::Recorder;
use super::util::{self, controller_uid};
use super::{
    SimConfig, daemonset, deployment, endpoints, hpa, kubelet, nodes, replicaset, statefulset,
};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Endpoints, Node, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How long unobserved creations/deletions hold back a controller before it acts again anyway.
const EXPECTATIONS_TTL: Duration = Duration::from_secs(30);
/// How long the initial list of one kind may take.
const CACHE_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Back-off after a failed write.
const RETRY: Duration = Duration::from_millis(500);
/// The longest a loop sleeps without an event.
const IDLE: Duration = Duration::from_secs(30);

/// Starts a reflector for `K` over all namespaces; every event wakes the given controllers.
///
/// Returns once the cache holds the initial list. Only this function waits for readiness: a
/// kube-runtime store wakes a single waiter, so several loops waiting on one store could hang.
///
/// The cache drops `managedFields`: no simulator reads them, and the server ignores them in the
/// writes that send a cached object back, so keeping them only cost memory (a third or more of
/// a Deployment's size).
pub(super) async fn reflect<K>(
    client: &Client,
    wake: Vec<Arc<Notify>>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<Store<K>, super::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let api: Api<K> = Api::all(client.clone());
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(|obj: &mut K| obj.meta_mut().managed_fields = None),
    );
    tasks.push(tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match &event {
                Err(e) => tracing::debug!(error = %e, kind = %K::kind(&Default::default()), "simulator watch error"),
                Ok(ev) => tracing::trace!(kind = %K::kind(&Default::default()), event = ?std::mem::discriminant(ev), "simulator watch event"),
            }
            for n in &wake {
                n.notify_one();
            }
        }
    }));
    let kind = K::kind(&Default::default()).to_string();
    match tokio::time::timeout(CACHE_SYNC_TIMEOUT, reader.wait_until_ready()).await {
        Ok(Ok(())) => Ok(reader),
        _ => Err(super::Error::CacheSync(kind)),
    }
}

/// Sleeps until woken or until `next` (wall clock), then lets a burst of events settle.
async fn wait(name: &str, notify: &Notify, next: Option<Timestamp>) {
    tracing::trace!(controller = name, ?next, "simulator idle");
    let sleep = next.map_or(IDLE, |t| {
        let ms = t
            .duration_since(Timestamp::now())
            .as_millis()
            .clamp(5, IDLE.as_millis() as i128);
        Duration::from_millis(ms as u64)
    });
    tokio::select! {
        _ = notify.notified() => tracing::trace!(controller = name, "simulator woken"),
        _ = tokio::time::sleep(sleep) => tracing::trace!(controller = name, "simulator timer"),
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
}

fn retry_at() -> Option<Timestamp> {
    Timestamp::now()
        .checked_add(SignedDuration::try_from(RETRY).unwrap_or_default())
        .ok()
}

fn ns_of<K: Resource>(obj: &K) -> String {
    obj.meta().namespace.clone().unwrap_or_default()
}

/// Whether two objects serialize the same once unset and empty fields are ignored; guards against
/// rewriting a status forever when the server normalizes what it stores. Equal typed values are
/// the common case of a steady state and need no serializing.
fn same<T: serde::Serialize + PartialEq>(a: &T, b: &T) -> bool {
    a == b || util::canonical(a) == util::canonical(b)
}

/// A hash of the resourceVersions a loop planned one object from: equal fingerprints mean the
/// same inputs, hence the same plan, as long as the time the plan asked to be requeued at has
/// not come.
#[derive(Default)]
struct Fingerprint(std::collections::hash_map::DefaultHasher);

impl Fingerprint {
    fn add<K: Resource>(&mut self, obj: &K) -> &mut Self {
        use std::hash::Hasher;
        let meta = obj.meta();
        self.0
            .write(meta.uid.as_deref().unwrap_or_default().as_bytes());
        self.0.write(
            meta.resource_version
                .as_deref()
                .unwrap_or_default()
                .as_bytes(),
        );
        self
    }

    fn text(&mut self, t: &str) -> &mut Self {
        use std::hash::Hasher;
        self.0.write(t.as_bytes());
        self
    }

    fn flag(&mut self, b: bool) -> &mut Self {
        use std::hash::Hasher;
        self.0.write_u8(u8::from(b));
        self
    }

    fn finish(&self) -> u64 {
        use std::hash::Hasher;
        self.0.finish()
    }
}

/// What a loop last did with each object: the fingerprint of inputs whose plan was carried out
/// without error, and when that plan asked to run again. An object is planned again only when
/// one of its inputs changed or that time came, the way a real controller only works on keys an
/// informer event or a delayed requeue put on its queue (instead of re-planning every object on
/// every event, which made each pass O(cluster size)).
#[derive(Default)]
struct Synced {
    done: HashMap<String, (u64, Option<Timestamp>)>,
}

impl Synced {
    /// The requeue time to keep waiting for when `key` was synced from these inputs and that time
    /// has not come (`Some(None)` when it asked for none), or `None` when it must be planned.
    fn unchanged(&self, key: &str, fingerprint: u64, now: Timestamp) -> Option<Option<Timestamp>> {
        match self.done.get(key) {
            Some((f, at)) if *f == fingerprint && at.is_none_or(|t| t > now) => Some(*at),
            _ => None,
        }
    }

    /// Records a plan carried out without error.
    fn record(&mut self, key: String, fingerprint: u64, requeue_at: Option<Timestamp>) {
        self.done.insert(key, (fingerprint, requeue_at));
    }

    /// Forgets `key`, so that it is planned on the next pass (after a failed write).
    fn forget(&mut self, key: &str) {
        self.done.remove(key);
    }

    /// Drops the objects that are gone.
    fn retain(&mut self, live: &HashSet<String>) {
        self.done.retain(|k, _| live.contains(k));
    }
}

fn ignore_missing(r: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match r {
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        other => other,
    }
}

/// Index of objects by the UID of their controller (shared, not copied: a pass clones only the
/// objects it plans from).
fn by_controller<K: Resource>(items: &[Arc<K>]) -> HashMap<String, Vec<Arc<K>>> {
    let mut map: HashMap<String, Vec<Arc<K>>> = HashMap::new();
    for item in items {
        if let Some(uid) = controller_uid(item.meta()) {
            map.entry(uid.to_string())
                .or_default()
                .push(Arc::clone(item));
        }
    }
    map
}

/// Owned copies of shared objects, for the pure planners.
fn owned<K: Clone>(items: &[Arc<K>]) -> Vec<K> {
    items.iter().map(|i| (**i).clone()).collect()
}

/// Pods a controller created or deleted that the cache has not shown yet (the real controllers'
/// "expectations"): while any are pending the controller does not create or delete again.
#[derive(Default)]
struct Expectations {
    pending: HashMap<String, (HashSet<String>, HashSet<String>, Instant)>,
}

impl Expectations {
    fn satisfied(&mut self, owner: &str, present: &HashSet<String>) -> bool {
        let Some((adds, dels, since)) = self.pending.get_mut(owner) else {
            return true;
        };
        adds.retain(|n| !present.contains(n));
        dels.retain(|n| present.contains(n));
        if (adds.is_empty() && dels.is_empty()) || since.elapsed() > EXPECTATIONS_TTL {
            self.pending.remove(owner);
            return true;
        }
        false
    }

    fn expect(&mut self, owner: &str, add: Option<String>, del: Option<String>) {
        let entry = self
            .pending
            .entry(owner.to_string())
            .or_insert_with(|| (HashSet::new(), HashSet::new(), Instant::now()));
        entry.0.extend(add);
        entry.1.extend(del);
        entry.2 = Instant::now();
    }
}

fn names(pods: &[Arc<Pod>]) -> HashSet<String> {
    pods.iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

async fn delete_pod(client: &Client, ns: &str, name: &str) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    ignore_missing(api.delete(name, &DeleteParams::default()).await.map(|_| ()))
}

/// The Deployment controller loop.
/// Deletes the Pods a ReplicaSet or DaemonSet plan names, as their controllers do: an event and
/// an expectation per Pod deleted.
struct PodDeletion<'a> {
    client: &'a Client,
    recorder: &'a Recorder,
}

impl PodDeletion<'_> {
    /// Deletes `names`, Pods of `owner` (uid `uid`) in `ns`; false when one could not be deleted.
    async fn delete_owned<K: Resource<DynamicType = ()>>(
        &self,
        ns: &str,
        owner: &K,
        uid: &str,
        names: &[String],
        expectations: &mut Expectations,
    ) -> bool {
        let mut all = true;
        for name in names {
            match delete_pod(self.client, ns, name).await {
                Ok(()) => {
                    self.recorder
                        .normal(owner, "SuccessfulDelete", format!("Deleted pod: {name}"))
                        .await;
                    expectations.expect(uid, None, Some(name.clone()));
                }
                Err(_) => all = false,
            }
        }
        all
    }
}

pub(super) async fn run_deployments(
    client: Client,
    notify: Arc<Notify>,
    deployments: Store<Deployment>,
    replica_sets: Store<ReplicaSet>,
    pods: Store<Pod>,
) {
    let recorder = Recorder::new(client.clone(), "deployment-controller");
    // Deployment key -> ReplicaSet created but not yet seen.
    let mut created: HashMap<String, (String, Instant)> = HashMap::new();
    let mut synced = Synced::default();
    loop {
        let mut next = None;
        let rs_index = by_controller(&replica_sets.state());
        let pod_index = by_controller(&pods.state());
        let all = deployments.state();
        synced.retain(&all.iter().filter_map(|d| d.metadata.uid.clone()).collect());
        let now = Timestamp::now();
        for d in all {
            let ns = ns_of(&*d);
            let key = format!("{ns}/{}", d.name_any());
            if let Some((rs_name, since)) = created.get(&key) {
                let seen = replica_sets
                    .get(&ObjectRef::new(rs_name).within(&ns))
                    .is_some();
                if seen || since.elapsed() > EXPECTATIONS_TTL {
                    created.remove(&key);
                } else {
                    continue;
                }
            }
            let uid = d.metadata.uid.clone().unwrap_or_default();
            let owned_rs = rs_index.get(&uid).map(Vec::as_slice).unwrap_or_default();
            let owned_pods: Vec<Arc<Pod>> = owned_rs
                .iter()
                .filter_map(|rs| rs.metadata.uid.as_ref())
                .flat_map(|u| pod_index.get(u).into_iter().flatten().cloned())
                .collect();
            let mut fingerprint = Fingerprint::default();
            fingerprint.add(&*d);
            owned_rs.iter().for_each(|rs| _ = fingerprint.add(&**rs));
            owned_pods.iter().for_each(|p| _ = fingerprint.add(&**p));
            let fingerprint = fingerprint.finish();
            if let Some(at) = synced.unchanged(&uid, fingerprint, now) {
                next = util::earliest(next, at);
                continue;
            }
            let (owned, owned_pods) = (owned(owned_rs), owned(&owned_pods));
            let plan = match deployment::plan(&d, &owned, &owned_pods, Timestamp::now()) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(deployment = %key, error = %e, "cannot plan deployment");
                    continue;
                }
            };
            next = util::earliest(next, plan.requeue_at);
            let requeue_at = plan.requeue_at;
            let events = plan.events.clone();
            let result = apply_deployment(&client, &d, plan).await;
            if result.is_ok() {
                for message in events {
                    recorder.normal(&*d, "ScalingReplicaSet", message).await;
                }
            }
            match result {
                Ok(Some(rs_name)) => {
                    synced.record(uid, fingerprint, requeue_at);
                    created.insert(key, (rs_name, Instant::now()));
                }
                Ok(None) => synced.record(uid, fingerprint, requeue_at),
                Err(e) => {
                    synced.forget(&uid);
                    tracing::debug!(deployment = %key, error = %e, "deployment sync failed, retrying");
                    next = util::earliest(next, retry_at());
                }
            }
        }
        wait("deployment", &notify, next).await;
    }
}

/// Carries out a Deployment plan; returns the name of a ReplicaSet it created.
async fn apply_deployment(
    client: &Client,
    d: &Deployment,
    plan: deployment::Plan,
) -> Result<Option<String>, kube::Error> {
    let ns = ns_of(d);
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let d_api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let mut created = None;
    if let Some(rs) = &plan.create {
        match rs_api.create(&PostParams::default(), rs).await {
            Ok(_) => created = rs.metadata.name.clone(),
            Err(kube::Error::Api(s)) if s.is_already_exists() => {
                // Either the cache was behind (the next pass sees our ReplicaSet) or someone else's
                // ReplicaSet has the name: then, like the real controller, count a hash collision
                // so the next pass picks another name.
                let name = rs.name_any();
                let existing = rs_api.get_opt(&name).await?;
                let ours = existing.as_ref().and_then(|e| controller_uid(&e.metadata))
                    == d.metadata.uid.as_deref();
                if !ours {
                    let mut updated = d.clone();
                    let status = updated.status.get_or_insert_with(Default::default);
                    status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                    d_api
                        .replace_status(&d.name_any(), &PostParams::default(), &updated)
                        .await?;
                }
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
    }
    for rs in &plan.update {
        rs_api
            .replace(&rs.name_any(), &PostParams::default(), rs)
            .await?;
    }
    for name in &plan.delete {
        ignore_missing(
            rs_api
                .delete(name, &DeleteParams::background())
                .await
                .map(|_| ()),
        )?;
    }
    if let Some(status) = plan.status
        && !same(&d.status, &Some(status.clone()))
    {
        let mut updated = d.clone();
        updated.status = Some(status);
        d_api
            .replace_status(&d.name_any(), &PostParams::default(), &updated)
            .await?;
    }
    if let Some(revision) = plan.revision {
        let patch =
            serde_json::json!({"metadata": {"annotations": {deployment::REVISION: revision}}});
        d_api
            .patch(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }
    Ok(created)
}

/// Picks the ready node with the fewest active pods (a stand-in for the scheduler).
fn pick_node(nodes: &Store<Node>, load: &mut BTreeMap<String, usize>) -> Option<String> {
    let mut candidates: Vec<String> = nodes
        .state()
        .iter()
        .filter(|n| {
            nodes::is_ready(n)
                && !n
                    .spec
                    .as_ref()
                    .and_then(|s| s.unschedulable)
                    .unwrap_or(false)
        })
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    candidates.sort();
    let best = candidates
        .into_iter()
        .min_by_key(|n| load.get(n).copied().unwrap_or(0))?;
    *load.entry(best.clone()).or_default() += 1;
    Some(best)
}

/// The ReplicaSet controller loop.
pub(super) async fn run_replica_sets(
    client: Client,
    notify: Arc<Notify>,
    replica_sets: Store<ReplicaSet>,
    pods: Store<Pod>,
    nodes: Store<Node>,
) {
    let mut expectations = Expectations::default();
    let recorder = Recorder::new(client.clone(), "replicaset-controller");
    let deletion = PodDeletion {
        client: &client,
        recorder: &recorder,
    };
    let mut synced = Synced::default();
    loop {
        let mut next = None;
        let all_pods = pods.state();
        let pod_index = by_controller(&all_pods);
        let mut load: BTreeMap<String, usize> = BTreeMap::new();
        for p in all_pods.iter().filter(|p| util::pod_active(p)) {
            if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
                *load.entry(n).or_default() += 1;
            }
        }
        let all = replica_sets.state();
        synced.retain(&all.iter().filter_map(|r| r.metadata.uid.clone()).collect());
        let now = Timestamp::now();
        for rs in all {
            let uid = rs.metadata.uid.clone().unwrap_or_default();
            let owned_pods = pod_index.get(&uid).map(Vec::as_slice).unwrap_or_default();
            let manage = expectations.satisfied(&uid, &names(owned_pods));
            let mut fingerprint = Fingerprint::default();
            fingerprint.add(&*rs).flag(manage);
            owned_pods.iter().for_each(|p| _ = fingerprint.add(&**p));
            let fingerprint = fingerprint.finish();
            if let Some(at) = synced.unchanged(&uid, fingerprint, now) {
                next = util::earliest(next, at);
                continue;
            }
            let owned = owned(owned_pods);
            let plan = replicaset::plan(&rs, &owned, manage, Timestamp::now());
            next = util::earliest(next, plan.requeue_at);
            let requeue_at = plan.requeue_at;
            let ns = ns_of(&*rs);
            let pod_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let mut failed = false;
            for _ in 0..plan.create {
                let pod = replicaset::new_pod(&rs, pick_node(&nodes, &mut load));
                match pod_api.create(&PostParams::default(), &pod).await {
                    Ok(created) => {
                        recorder
                            .normal(
                                &*rs,
                                "SuccessfulCreate",
                                format!("Created pod: {}", created.name_any()),
                            )
                            .await;
                        expectations.expect(&uid, created.metadata.name, None);
                    }
                    Err(e) => {
                        tracing::debug!(replicaset = %rs.name_any(), error = %e, "pod creation failed");
                        failed = true;
                        break;
                    }
                }
            }
            failed |= !deletion
                .delete_owned(&ns, &*rs, &uid, &plan.delete, &mut expectations)
                .await;
            if let Some(status) = plan.status
                && !same(&rs.status, &Some(status.clone()))
            {
                let mut updated = (*rs).clone();
                updated.status = Some(status);
                let api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
                failed |= api
                    .replace_status(&rs.name_any(), &PostParams::default(), &updated)
                    .await
                    .is_err();
            }
            if failed {
                synced.forget(&uid);
                next = util::earliest(next, retry_at());
            } else {
                synced.record(uid, fingerprint, requeue_at);
            }
        }
        wait("replicaset", &notify, next).await;
    }
}

/// The kubelet loop: moves every pod through its simulated lifecycle.
pub(super) async fn run_kubelet(
    client: Client,
    notify: Arc<Notify>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    config: SimConfig,
) {
    let mut started: HashMap<String, Timestamp> = HashMap::new();
    let mut ips: HashMap<String, String> = HashMap::new();
    let mut next_ip: u32 = 0;
    let ready_delay = SignedDuration::try_from(config.pod_ready_delay).unwrap_or_default();
    let crash_interval = SignedDuration::try_from(config.crashloop_interval).unwrap_or_default();
    let mut synced = Synced::default();
    loop {
        let mut next = None;
        let all = pods.state();
        let used: HashSet<String> = all
            .iter()
            .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
            .collect();
        let node_ips: HashMap<String, String> = nodes
            .state()
            .iter()
            .filter_map(|n| {
                let ip = n
                    .status
                    .as_ref()?
                    .addresses
                    .as_ref()?
                    .iter()
                    .find(|a| a.type_ == "InternalIP")?
                    .address
                    .clone();
                Some((n.metadata.name.clone()?, ip))
            })
            .collect();
        let live: HashSet<String> = all.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        started.retain(|uid, _| live.contains(uid));
        ips.retain(|uid, _| live.contains(uid));
        synced.retain(&live);
        let now = Timestamp::now();
        for pod in all {
            let ns = ns_of(&*pod);
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
            let node_ip = node_name.as_ref().and_then(|n| node_ips.get(n));
            let mut fingerprint = Fingerprint::default();
            fingerprint.add(&*pod).flag(node_ip.is_some());
            if let Some(ip) = node_ip {
                fingerprint.text(ip);
            }
            let fingerprint = fingerprint.finish();
            if let Some(at) = synced.unchanged(&uid, fingerprint, now) {
                next = util::earliest(next, at);
                continue;
            }
            if pod.metadata.deletion_timestamp.is_some() {
                // The kubelet finishes graceful deletions at once: the containers are not real.
                let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                match api
                    .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
                    .await
                {
                    Ok(_) => synced.record(uid, fingerprint, None),
                    Err(_) => next = util::earliest(next, retry_at()),
                }
                continue;
            }
            if util::pod_terminal(&pod) {
                synced.record(uid, fingerprint, None);
                continue;
            }
            let existing = pod.status.as_ref();
            let start = *started.entry(uid.clone()).or_insert_with(|| {
                existing
                    .and_then(|s| s.start_time.as_ref())
                    .map_or_else(Timestamp::now, |t| t.0)
            });
            let pod_ip = match existing.and_then(|s| s.pod_ip.clone()) {
                Some(ip) => ip,
                None => ips
                    .entry(uid.clone())
                    .or_insert_with(|| {
                        loop {
                            next_ip += 1;
                            let ip = format!("10.244.{}.{}", next_ip / 250, 2 + next_ip % 250);
                            if !used.contains(&ip) {
                                break ip;
                            }
                        }
                    })
                    .clone(),
            };
            let host_ip = node_ip.cloned().unwrap_or_else(|| nodes::ip(0));
            let env = kubelet::PodEnv {
                host_ip,
                pod_ip,
                started: start,
                ready_delay,
                crash_interval,
            };
            let (status, when) = kubelet::pod_status(&pod, &env, Timestamp::now());
            next = util::earliest(next, when);
            if same(&pod.status, &Some(status.clone())) {
                synced.record(uid, fingerprint, when);
            } else {
                let mut updated = (*pod).clone();
                updated.status = Some(status);
                let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                match api
                    .replace_status(&pod.name_any(), &PostParams::default(), &updated)
                    .await
                {
                    Ok(_) => synced.record(uid, fingerprint, when),
                    Err(e) => {
                        tracing::debug!(pod = %pod.name_any(), error = %e, "pod status write failed");
                        next = util::earliest(next, retry_at());
                    }
                }
            }
        }
        wait("kubelet", &notify, next).await;
    }
}

/// The DaemonSet controller loop.
pub(super) async fn run_daemon_sets(
    client: Client,
    notify: Arc<Notify>,
    daemon_sets: Store<DaemonSet>,
    pods: Store<Pod>,
    nodes: Store<Node>,
) {
    let mut expectations = Expectations::default();
    let recorder = Recorder::new(client.clone(), "daemonset-controller");
    let deletion = PodDeletion {
        client: &client,
        recorder: &recorder,
    };
    loop {
        let mut next = None;
        let pod_index = by_controller(&pods.state());
        let all_nodes: Vec<Node> = nodes.state().iter().map(|n| (**n).clone()).collect();
        for ds in daemon_sets.state() {
            let uid = ds.metadata.uid.clone().unwrap_or_default();
            let owned_pods = pod_index.get(&uid).map(Vec::as_slice).unwrap_or_default();
            let manage = expectations.satisfied(&uid, &names(owned_pods));
            let owned = owned(owned_pods);
            let plan = daemonset::plan(&ds, &all_nodes, &owned, manage, Timestamp::now());
            next = util::earliest(next, plan.requeue_at);
            let ns = ns_of(&*ds);
            let pod_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let mut failed = false;
            for node in &plan.create_on {
                match pod_api
                    .create(&PostParams::default(), &daemonset::new_pod(&ds, node))
                    .await
                {
                    Ok(created) => {
                        recorder
                            .normal(
                                &*ds,
                                "SuccessfulCreate",
                                format!("Created pod: {}", created.name_any()),
                            )
                            .await;
                        expectations.expect(&uid, created.metadata.name, None);
                    }
                    Err(_) => failed = true,
                }
            }
            failed |= !deletion
                .delete_owned(&ns, &*ds, &uid, &plan.delete, &mut expectations)
                .await;
            if let Some(status) = plan.status
                && !same(&ds.status, &Some(status.clone()))
            {
                let mut updated = (*ds).clone();
                updated.status = Some(status);
                let api: Api<DaemonSet> = Api::namespaced(client.clone(), &ns);
                failed |= api
                    .replace_status(&ds.name_any(), &PostParams::default(), &updated)
                    .await
                    .is_err();
            }
            if failed {
                next = util::earliest(next, retry_at());
            }
        }
        wait("daemonset", &notify, next).await;
    }
}

/// The StatefulSet controller loop.
pub(super) async fn run_stateful_sets(
    client: Client,
    notify: Arc<Notify>,
    sets: Store<StatefulSet>,
    pods: Store<Pod>,
    claims: Store<PersistentVolumeClaim>,
    revisions: Store<ControllerRevision>,
    nodes: Store<Node>,
) {
    let mut expectations = Expectations::default();
    let recorder = Recorder::new(client.clone(), "statefulset-controller");
    loop {
        let mut next = None;
        let all_pods = pods.state();
        let pod_index = by_controller(&all_pods);
        let rev_index = by_controller(&revisions.state());
        let mut load: BTreeMap<String, usize> = BTreeMap::new();
        for p in all_pods.iter().filter(|p| util::pod_active(p)) {
            if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
                *load.entry(n).or_default() += 1;
            }
        }
        let all_claims = claims.state();
        for set in sets.state() {
            let uid = set.metadata.uid.clone().unwrap_or_default();
            let ns = ns_of(&*set);
            // StatefulSets are few: their Pods and revisions are copied for the pure planner.
            let owned: Vec<Pod> = pod_index
                .get(&uid)
                .map(|v| v.iter().map(|p| Pod::clone(p)).collect())
                .unwrap_or_default();
            let owned_revisions: Vec<ControllerRevision> = rev_index
                .get(&uid)
                .map(|v| v.iter().map(|r| ControllerRevision::clone(r)).collect())
                .unwrap_or_default();
            let present: std::collections::BTreeSet<String> = all_claims
                .iter()
                .filter(|c| ns_of(&***c) == ns)
                .map(|c| c.name_any())
                .collect();
            let manage = expectations.satisfied(
                &uid,
                &owned
                    .iter()
                    .filter_map(|p| p.metadata.name.clone())
                    .collect::<HashSet<_>>(),
            );
            let plan = statefulset::plan(
                &set,
                &owned,
                &present,
                &owned_revisions,
                manage,
                Timestamp::now(),
            );
            next = util::earliest(next, plan.requeue_at);
            if let Err(e) = apply_stateful_set(
                &client,
                &recorder,
                &set,
                plan,
                &nodes,
                &mut load,
                &mut expectations,
            )
            .await
            {
                tracing::debug!(statefulset = %set.name_any(), error = %e, "statefulset sync failed, retrying");
                next = util::earliest(next, retry_at());
            }
        }
        wait("statefulset", &notify, next).await;
    }
}

/// Carries out a StatefulSet plan: revisions, then claims before the Pods that mount them, then
/// deletions, then the status.
async fn apply_stateful_set(
    client: &Client,
    recorder: &Recorder,
    set: &StatefulSet,
    plan: statefulset::Plan,
    nodes: &Store<Node>,
    load: &mut BTreeMap<String, usize>,
    expectations: &mut Expectations,
) -> Result<(), kube::Error> {
    let ns = ns_of(set);
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let set_name = set.name_any();
    let revs: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    if let Some(rev) = &plan.create_revision {
        match revs.create(&PostParams::default(), rev).await {
            Err(kube::Error::Api(s)) if s.is_already_exists() => {}
            other => {
                other?;
            }
        }
    }
    if let Some(rev) = &plan.renumber_revision {
        revs.replace(&rev.name_any(), &PostParams::default(), rev)
            .await?;
    }
    for claim in &plan.create_claims {
        let name = claim.name_any();
        match claims.create(&PostParams::default(), claim).await {
            Ok(_) => {
                recorder
                    .normal(
                        set,
                        "SuccessfulCreate",
                        format!(
                            "create Claim {name} Pod {} in StatefulSet {set_name} success",
                            claim_pod(&name, &set_name)
                        ),
                    )
                    .await;
            }
            Err(kube::Error::Api(s)) if s.is_already_exists() => {}
            Err(e) => return Err(e),
        }
    }
    for pod in &plan.create_pods {
        let mut pod = pod.clone();
        if let Some(spec) = pod.spec.as_mut()
            && spec.node_name.is_none()
        {
            spec.node_name = pick_node(nodes, load);
        }
        let name = pod.name_any();
        match pods.create(&PostParams::default(), &pod).await {
            Ok(_) => {
                recorder
                    .normal(
                        set,
                        "SuccessfulCreate",
                        format!("create Pod {name} in StatefulSet {set_name} successful"),
                    )
                    .await;
                expectations.expect(&uid, Some(name), None);
            }
            Err(kube::Error::Api(s)) if s.is_already_exists() => {}
            Err(e) => return Err(e),
        }
    }
    for name in &plan.delete_pods {
        delete_pod(client, &ns, name).await?;
        recorder
            .normal(
                set,
                "SuccessfulDelete",
                format!("delete Pod {name} in StatefulSet {set_name} successful"),
            )
            .await;
        expectations.expect(&uid, None, Some(name.clone()));
    }
    for name in &plan.delete_claims {
        ignore_missing(
            claims
                .delete(name, &DeleteParams::default())
                .await
                .map(|_| ()),
        )?;
    }
    for name in &plan.delete_revisions {
        ignore_missing(
            revs.delete(name, &DeleteParams::default())
                .await
                .map(|_| ()),
        )?;
    }
    if let Some(status) = plan.status
        && !same(&set.status, &Some(status.clone()))
    {
        let mut updated = set.clone();
        updated.status = Some(status);
        Api::<StatefulSet>::namespaced(client.clone(), &ns)
            .replace_status(&set_name, &PostParams::default(), &updated)
            .await?;
    }
    Ok(())
}

/// `data-web-0` of set `web` → the Pod `web-0` it belongs to.
fn claim_pod(claim: &str, set: &str) -> String {
    claim
        .rfind(&format!("-{set}-"))
        .map(|i| claim[i + 1..].to_string())
        .unwrap_or_default()
}

/// Reads the target's `spec.replicas` through its `/scale` subresource.
async fn get_scale(client: &Client, ns: &str, kind: &str, name: &str) -> Result<i32, kube::Error> {
    let scale = match kind {
        "StatefulSet" => {
            Api::<StatefulSet>::namespaced(client.clone(), ns)
                .get_scale(name)
                .await?
        }
        "ReplicaSet" => {
            Api::<ReplicaSet>::namespaced(client.clone(), ns)
                .get_scale(name)
                .await?
        }
        _ => {
            Api::<Deployment>::namespaced(client.clone(), ns)
                .get_scale(name)
                .await?
        }
    };
    Ok(scale.spec.and_then(|s| s.replicas).unwrap_or(0))
}

async fn set_scale(
    client: &Client,
    ns: &str,
    kind: &str,
    name: &str,
    replicas: i32,
) -> Result<(), kube::Error> {
    let patch = Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}}));
    let pp = PatchParams::default();
    match kind {
        "StatefulSet" => {
            Api::<StatefulSet>::namespaced(client.clone(), ns)
                .patch_scale(name, &pp, &patch)
                .await?
        }
        "ReplicaSet" => {
            Api::<ReplicaSet>::namespaced(client.clone(), ns)
                .patch_scale(name, &pp, &patch)
                .await?
        }
        _ => {
            Api::<Deployment>::namespaced(client.clone(), ns)
                .patch_scale(name, &pp, &patch)
                .await?
        }
    };
    Ok(())
}

/// The HPA controller loop: every sync period, and whenever an HPA or Deployment changes.
pub(super) async fn run_hpas(
    client: Client,
    notify: Arc<Notify>,
    hpas: Store<HorizontalPodAutoscaler>,
    period: Duration,
) {
    let recorder = Recorder::new(client.clone(), "horizontal-pod-autoscaler");
    loop {
        let mut failed = false;
        for h in hpas.state() {
            let ns = ns_of(&*h);
            let target = h.spec.scale_target_ref.clone();
            if !matches!(
                target.kind.as_str(),
                "Deployment" | "StatefulSet" | "ReplicaSet"
            ) {
                tracing::debug!(hpa = %h.name_any(), kind = %target.kind, "unsupported scale target kind");
                continue;
            }
            let current = match get_scale(&client, &ns, &target.kind, &target.name).await {
                Ok(c) => c,
                Err(e) => {
                    let text = match &e {
                        kube::Error::Api(s) => s.message.clone(),
                        other => other.to_string(),
                    };
                    if let Some(status) = hpa::failed_get_scale(&h, &text, Timestamp::now()) {
                        recorder.warning(&*h, "FailedGetScale", text).await;
                        let mut updated = (*h).clone();
                        updated.status = Some(status);
                        let api: Api<HorizontalPodAutoscaler> =
                            Api::namespaced(client.clone(), &ns);
                        let _ = api
                            .replace_status(&h.name_any(), &PostParams::default(), &updated)
                            .await;
                    }
                    continue;
                }
            };
            let plan = hpa::plan(&h, current, Timestamp::now());
            if let Some(replicas) = plan.rescale {
                if set_scale(&client, &ns, &target.kind, &target.name, replicas)
                    .await
                    .is_err()
                {
                    failed = true;
                    continue;
                }
                let why = plan.rescale_reason.clone().unwrap_or_default();
                recorder
                    .normal(
                        &*h,
                        "SuccessfulRescale",
                        format!("New size: {replicas}; reason: {why}"),
                    )
                    .await;
            }
            if let Some(status) = plan.status
                && !same(&h.status, &Some(status.clone()))
            {
                let mut updated = (*h).clone();
                updated.status = Some(status);
                let api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns);
                failed |= api
                    .replace_status(&h.name_any(), &PostParams::default(), &updated)
                    .await
                    .is_err();
            }
        }
        let period = if failed { RETRY } else { period };
        let next = Timestamp::now()
            .checked_add(SignedDuration::try_from(period).unwrap_or_default())
            .ok();
        wait("hpa", &notify, next).await;
    }
}

/// Pods by namespace and by each label pair, so that a Service's selector is matched against the
/// pods carrying one of its labels instead of every pod (which made a pass O(Services × Pods)).
struct PodIndex<'a> {
    by_ns: HashMap<&'a str, Vec<&'a Pod>>,
    by_label: HashMap<(&'a str, &'a str, &'a str), Vec<&'a Pod>>,
}

impl<'a> PodIndex<'a> {
    fn new(pods: &'a [Arc<Pod>]) -> Self {
        let mut by_ns: HashMap<&str, Vec<&Pod>> = HashMap::new();
        let mut by_label: HashMap<(&str, &str, &str), Vec<&Pod>> = HashMap::new();
        for p in pods {
            let ns = p.metadata.namespace.as_deref().unwrap_or_default();
            by_ns.entry(ns).or_default().push(p);
            for (k, v) in p.metadata.labels.iter().flatten() {
                by_label.entry((ns, k, v)).or_default().push(p);
            }
        }
        PodIndex { by_ns, by_label }
    }

    /// The pods of `ns` that can match `selector`: those with its first label pair (every pod of
    /// the namespace for an empty selector). The caller still matches the whole selector.
    fn candidates(&self, ns: &str, selector: Option<&BTreeMap<String, String>>) -> Vec<&'a Pod> {
        let found = match selector.and_then(|s| s.iter().next()) {
            Some((k, v)) => self.by_label.get(&(ns, k.as_str(), v.as_str())),
            None => self.by_ns.get(ns),
        };
        found.cloned().unwrap_or_default()
    }
}

/// The endpoints controller loop.
pub(super) async fn run_endpoints(
    client: Client,
    notify: Arc<Notify>,
    services: Store<Service>,
    pods: Store<Pod>,
    endpoints_store: Store<Endpoints>,
) {
    let mut synced = Synced::default();
    loop {
        let mut next = None;
        let all_pods = pods.state();
        let index = PodIndex::new(&all_pods);
        let all_services = services.state();
        synced.retain(
            &all_services
                .iter()
                .filter_map(|s| s.metadata.uid.clone())
                .collect(),
        );
        let now = Timestamp::now();
        for svc in &all_services {
            let ns = ns_of(&**svc);
            let uid = svc.metadata.uid.clone().unwrap_or_default();
            let candidates =
                index.candidates(&ns, svc.spec.as_ref().and_then(|s| s.selector.as_ref()));
            let current = endpoints_store.get(&ObjectRef::new(&svc.name_any()).within(&ns));
            let mut fingerprint = Fingerprint::default();
            fingerprint.add(&**svc).flag(current.is_some());
            if let Some(c) = &current {
                fingerprint.add(&**c);
            }
            candidates.iter().for_each(|p| _ = fingerprint.add(*p));
            let fingerprint = fingerprint.finish();
            if synced.unchanged(&uid, fingerprint, now).is_some() {
                continue;
            }
            let candidates: Vec<Pod> = candidates.into_iter().cloned().collect();
            let Some(desired) = endpoints::desired(svc, &candidates) else {
                synced.record(uid, fingerprint, None);
                continue;
            };
            let api: Api<Endpoints> = Api::namespaced(client.clone(), &ns);
            let result = match current {
                None => match api.create(&PostParams::default(), &desired).await {
                    Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(()),
                    other => other.map(|_| ()),
                },
                Some(current) if !endpoints::up_to_date(&current, &desired) => {
                    let mut updated = (*current).clone();
                    updated.subsets = desired.subsets;
                    updated.metadata.labels = desired.metadata.labels;
                    api.replace(&svc.name_any(), &PostParams::default(), &updated)
                        .await
                        .map(|_| ())
                }
                Some(_) => Ok(()),
            };
            if result.is_err() {
                synced.forget(&uid);
                next = util::earliest(next, retry_at());
            } else {
                synced.record(uid, fingerprint, None);
            }
        }
        // Endpoints whose Service is gone go too, except leader-election records.
        let service_keys: HashSet<(String, String)> = all_services
            .iter()
            .map(|s| (ns_of(&**s), s.name_any()))
            .collect();
        for ep in endpoints_store.state() {
            let key = (ns_of(&*ep), ep.name_any());
            let leader = ep
                .annotations()
                .contains_key("control-plane.alpha.kubernetes.io/leader");
            if !leader && !service_keys.contains(&key) {
                let api: Api<Endpoints> = Api::namespaced(client.clone(), &key.0);
                let _ = ignore_missing(
                    api.delete(&key.1, &DeleteParams::default())
                        .await
                        .map(|_| ()),
                );
            }
        }
        wait("endpoints", &notify, next).await;
    }
}

/// Registers the simulated nodes (create if missing, then post a Ready status).
pub(super) async fn register_nodes(client: &Client, count: usize) -> Result<(), kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    for i in 0..count {
        let name = nodes::name(i);
        let existing = match api.get_opt(&name).await? {
            Some(n) => n,
            None => match api.create(&PostParams::default(), &nodes::node(i)).await {
                Ok(n) => n,
                Err(kube::Error::Api(s)) if s.is_already_exists() => api.get(&name).await?,
                Err(e) => return Err(e),
            },
        };
        if !nodes::is_ready(&existing) {
            let patch = serde_json::json!({"status": nodes::status(i, Timestamp::now())});
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> HashSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn expectations_hold_until_creations_and_deletions_are_observed() {
        let mut e = Expectations::default();
        assert!(e.satisfied("rs", &set(&[])), "nothing pending");
        e.expect("rs", Some("a".into()), None);
        e.expect("rs", None, Some("old".into()));
        assert!(!e.satisfied("rs", &set(&["old"])), "creation not seen yet");
        assert!(
            !e.satisfied("rs", &set(&["a", "old"])),
            "deletion not seen yet"
        );
        assert!(e.satisfied("rs", &set(&["a"])));
        assert!(e.satisfied("other", &set(&[])), "owners are independent");
    }
}
