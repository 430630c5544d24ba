//! The simulated Deployment controller's decisions (pure, no I/O): from a Deployment, the
//! ReplicaSets it controls and the clock, what to create, scale, delete and which status to write.
//!
//! It follows kube-controller-manager's deployment controller (`sync.go`, `rolling.go`,
//! `recreate.go`, `progress.go`, `util/deployment_util.go`) step by step, so the statuses, condition
//! reasons and messages, annotations and names are the ones a real cluster shows. One pass of
//! [`plan`] is one `syncDeployment`; the real controller writes intermediate statuses inside a
//! sync, the plan only the last one, which is the state the real one settles in.
use super::util::{
    self, POD_TEMPLATE_HASH, add_secs, controller_ref, controller_uid, scaled_value,
    templates_equal_ignoring_hash,
};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// Annotation on Deployments and ReplicaSets: the rollout sequence number.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Annotation on a ReplicaSet listing the revisions it served before a rollback.
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// Annotation on a ReplicaSet: the Deployment's replicas when it was last scaled.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// Annotation on a ReplicaSet: the Deployment's replicas plus maxSurge when it was last scaled.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
/// The real controller caps the revision-history annotation at this many characters.
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

/// Condition reasons, exactly as the real controller writes them.
pub mod reason {
    /// Progressing: one of the ReplicaSets was scaled as part of the rollout.
    pub const REPLICA_SET_UPDATED: &str = "ReplicaSetUpdated";
    /// Progressing: the controller created the new ReplicaSet.
    pub const NEW_REPLICA_SET_CREATED: &str = "NewReplicaSetCreated";
    /// Progressing: the controller adopted an existing ReplicaSet as the new one.
    pub const FOUND_NEW_REPLICA_SET: &str = "FoundNewReplicaSet";
    /// Progressing: the rollout finished.
    pub const NEW_REPLICA_SET_AVAILABLE: &str = "NewReplicaSetAvailable";
    /// Progressing: no progress within progressDeadlineSeconds.
    pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
    /// Progressing (Unknown): the Deployment is paused.
    pub const DEPLOYMENT_PAUSED: &str = "DeploymentPaused";
    /// Progressing (Unknown): the Deployment was resumed.
    pub const DEPLOYMENT_RESUMED: &str = "DeploymentResumed";
    /// Available: enough replicas are available.
    pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
    /// Available: too few replicas are available.
    pub const MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
}

/// Errors from planning a Deployment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Deployment has no name, namespace or selector.
    #[error("deployment is missing {0}")]
    Incomplete(&'static str),
    /// maxSurge/maxUnavailable or the selector could not be resolved.
    #[error(transparent)]
    Spec(#[from] util::Error),
}

/// What one reconcile of a Deployment decided.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// A new ReplicaSet to create.
    pub create: Option<ReplicaSet>,
    /// ReplicaSets to replace (scaled or re-annotated); each carries the resourceVersion it was
    /// read with, so a stale decision fails with a conflict instead of overwriting.
    pub update: Vec<ReplicaSet>,
    /// Names of old ReplicaSets to delete (revisionHistoryLimit).
    pub delete: Vec<String>,
    /// The value to put into the Deployment's `deployment.kubernetes.io/revision` annotation.
    pub revision: Option<String>,
    /// The status to write through `/status`, when it changed.
    pub status: Option<DeploymentStatus>,
    /// When to look again even if nothing changes (the progress-deadline check).
    pub requeue_at: Option<Timestamp>,
    /// Messages of the `ScalingReplicaSet` events the real controller records for these actions.
    pub events: Vec<String>,
}

/// The Deployment spec with the API server's defaults filled in.
#[derive(Debug, Clone)]
struct Resolved {
    replicas: i32,
    /// (maxSurge, maxUnavailable) for RollingUpdate; `None` for Recreate.
    rolling: Option<(IntOrString, IntOrString)>,
    min_ready_seconds: i32,
    revision_history_limit: Option<i32>,
    progress_deadline: Option<i32>,
    paused: bool,
}

impl Resolved {
    fn of(d: &Deployment) -> Self {
        let spec = Some(&d.spec);
        let strategy = spec.and_then(|s| s.strategy.as_ref());
        let recreate = strategy.and_then(|s| s.type_.as_deref()) == Some("Recreate");
        let pct25 = || IntOrString::String("25%".into());
        let rolling = (!recreate).then(|| {
            let ru = strategy.and_then(|s| s.rolling_update.as_ref());
            (
                ru.and_then(|r| r.max_surge.clone()).unwrap_or_else(pct25),
                ru.and_then(|r| r.max_unavailable.clone())
                    .unwrap_or_else(pct25),
            )
        });
        Resolved {
            replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
            rolling,
            min_ready_seconds: spec.and_then(|s| s.min_ready_seconds).unwrap_or(0),
            revision_history_limit: Some(spec.and_then(|s| s.revision_history_limit).unwrap_or(10))
                .filter(|l| *l != i32::MAX),
            progress_deadline: Some(
                spec.and_then(|s| s.progress_deadline_seconds)
                    .unwrap_or(600),
            )
            .filter(|p| *p != i32::MAX),
            paused: spec.and_then(|s| s.paused).unwrap_or(false),
        }
    }

    /// maxSurge and maxUnavailable resolved against `replicas` (`ResolveFenceposts`).
    fn fenceposts(&self) -> Result<(i32, i32), util::Error> {
        let Some((surge, unavailable)) = &self.rolling else {
            return Ok((0, 0));
        };
        let surge = scaled_value(surge, self.replicas, true)?;
        let mut unavailable = scaled_value(unavailable, self.replicas, false)?;
        if surge == 0 && unavailable == 0 {
            // Validation forbids both zero, but rounding down can produce it; the real
            // controller then allows one unavailable pod.
            unavailable = 1;
        }
        Ok((surge, unavailable))
    }

    fn max_surge(&self) -> Result<i32, util::Error> {
        Ok(self.fenceposts()?.0)
    }

    fn max_unavailable(&self) -> Result<i32, util::Error> {
        if self.rolling.is_none() || self.replicas == 0 {
            return Ok(0);
        }
        Ok(self.fenceposts()?.1.min(self.replicas))
    }
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(1)
}

fn rs_status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.replicas)
}

fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

fn rs_created(rs: &ReplicaSet) -> Option<Timestamp> {
    rs.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

fn rs_name(rs: &ReplicaSet) -> &str {
    rs.metadata.name.as_deref().unwrap_or_default()
}

/// A ReplicaSet's revision; `None` when the annotation is not a number (the real controller skips
/// those).
fn revision_of(rs: &ReplicaSet) -> Option<i64> {
    match rs
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
    {
        None => Some(0),
        Some(v) => v.parse().ok(),
    }
}

/// Oldest first; a ReplicaSet not yet stored (no timestamp) counts as the newest.
fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    match (rs_created(a), rs_created(b)) {
        (Some(x), Some(y)) if x != y => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        _ => rs_name(a).cmp(rs_name(b)),
    }
}

fn get_condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_.as_deref() == Some(type_))
}

fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: Some(type_.into()),
        status: Some(status.into()),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(util::time(now)),
        last_transition_time: Some(util::time(now)),
    }
}

/// Sets a condition unless one with the same status and reason exists; keeps the transition time
/// when only the reason changes (`SetDeploymentCondition`).
fn set_condition(status: &mut DeploymentStatus, mut condition: DeploymentCondition) {
    if let Some(current) = get_condition(status, condition.type_.as_deref().unwrap_or_default()) {
        if current.status == condition.status && current.reason == condition.reason {
            return;
        }
        if current.status == condition.status {
            condition.last_transition_time = current.last_transition_time.clone();
        }
    }
    let type_ = condition.type_.clone().unwrap_or_default();
    remove_condition(status, &type_);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(condition);
}

fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conds) = status.conditions.as_mut() {
        conds.retain(|c| c.type_.as_deref() != Some(type_));
        if conds.is_empty() {
            status.conditions = None;
        }
    }
}

/// Plans one reconcile of `deployment`. `replica_sets` are the ReplicaSets it controls, `pods` the
/// Pods those control (only the Recreate strategy looks at them).
pub fn plan(
    deployment: &Deployment,
    replica_sets: &[ReplicaSet],
    pods: &[Pod],
    now: Timestamp,
) -> Result<Plan, Error> {
    if deployment.metadata.name.is_none() {
        return Err(Error::Incomplete("metadata.name"));
    }
    let mut work = Work::new(deployment, replica_sets.to_vec(), now);
    let selector = &deployment.spec.selector;
    work.sync(selector, pods)?;
    Ok(work.finish(deployment))
}

/// The state one pass works on; mirrors the objects the real controller mutates within a sync.
struct Work {
    d: Deployment,
    spec: Resolved,
    rss: Vec<ReplicaSet>,
    /// Index of the ReplicaSet created in this pass.
    created: Option<usize>,
    /// Names of ReplicaSets changed in this pass.
    dirty: BTreeSet<String>,
    deleted: Vec<String>,
    revision: Option<String>,
    requeue_at: Option<Timestamp>,
    /// Set when the real controller would return early with an error and retry.
    stop: bool,
    events: Vec<String>,
    now: Timestamp,
}

impl Work {
    /// A pass over `d` and its ReplicaSets `rss` at `now`, nothing changed yet.
    fn new(d: &Deployment, rss: Vec<ReplicaSet>, now: Timestamp) -> Self {
        Work {
            d: d.clone(),
            spec: Resolved::of(d),
            rss,
            created: None,
            dirty: BTreeSet::new(),
            deleted: Vec::new(),
            revision: None,
            requeue_at: None,
            stop: false,
            events: Vec::new(),
            now,
        }
    }

    fn finish(self, original: &Deployment) -> Plan {
        let status = self.d.status.clone().unwrap_or_default();
        let original_status = original.status.clone().unwrap_or_default();
        Plan {
            create: self.created.map(|i| self.rss[i].clone()),
            update: self
                .rss
                .iter()
                .enumerate()
                .filter(|(i, rs)| Some(*i) != self.created && self.dirty.contains(rs_name(rs)))
                .map(|(_, rs)| rs.clone())
                .collect(),
            delete: self.deleted,
            revision: self.revision.filter(|r| {
                original
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(REVISION))
                    != Some(r)
            }),
            status: (status != original_status).then_some(status),
            requeue_at: self.requeue_at,
            events: self.events,
        }
    }

    fn status(&mut self) -> &mut DeploymentStatus {
        self.d.status.get_or_insert_with(Default::default)
    }

    fn current_status(&self) -> DeploymentStatus {
        self.d.status.clone().unwrap_or_default()
    }

    fn generation(&self) -> i64 {
        self.d.metadata.generation.unwrap_or(0)
    }

    /// `syncDeployment`.
    fn sync(&mut self, selector: &LabelSelector, pods: &[Pod]) -> Result<(), Error> {
        let selects_all = selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && selector
                .match_expressions
                .as_ref()
                .is_none_or(|e| e.is_empty());
        if selects_all {
            // The real controller refuses to act on a selector that selects everything; it only
            // acknowledges the generation.
            let generation = self.d.metadata.generation;
            let status = self.status();
            if status.observed_generation < generation {
                status.observed_generation = generation;
            }
            return Ok(());
        }
        if self.d.metadata.deletion_timestamp.is_some() {
            let (new, olds) = self.get_all_and_sync_revision(false)?;
            let all = with_new(olds, new);
            return self.sync_deployment_status(&all, new);
        }
        self.check_paused_conditions();
        if self.spec.paused {
            return self.sync_scaling();
        }
        if self.is_scaling_event()? {
            return self.sync_scaling();
        }
        if self.spec.rolling.is_some() {
            self.rollout_rolling()
        } else {
            self.rollout_recreate(pods)
        }
    }

    /// `checkPausedConditions`.
    fn check_paused_conditions(&mut self) {
        if self.spec.progress_deadline.is_none() {
            return;
        }
        let status = self.current_status();
        let cond = get_condition(&status, "Progressing");
        if cond.is_some_and(|c| c.reason.as_deref() == Some(reason::PROGRESS_DEADLINE_EXCEEDED)) {
            return;
        }
        let paused_cond =
            cond.is_some_and(|c| c.reason.as_deref() == Some(reason::DEPLOYMENT_PAUSED));
        let now = self.now;
        if self.spec.paused && !paused_cond {
            let c = new_condition(
                "Progressing",
                "Unknown",
                reason::DEPLOYMENT_PAUSED,
                "Deployment is paused".into(),
                now,
            );
            set_condition(self.status(), c);
        } else if !self.spec.paused && paused_cond {
            let c = new_condition(
                "Progressing",
                "Unknown",
                reason::DEPLOYMENT_RESUMED,
                "Deployment is resumed".into(),
                now,
            );
            set_condition(self.status(), c);
        }
    }

    /// `sync`: scaling events and paused Deployments.
    fn sync_scaling(&mut self) -> Result<(), Error> {
        let (new, olds) = self.get_all_and_sync_revision(false)?;
        self.scale(new, &olds)?;
        if self.stop {
            return Ok(());
        }
        if self.spec.paused {
            self.cleanup(&olds);
        }
        let all = with_new(olds, new);
        self.sync_deployment_status(&all, new)
    }

    /// `isScalingEvent`: an active ReplicaSet records a different desired size.
    fn is_scaling_event(&mut self) -> Result<bool, Error> {
        let (new, olds) = self.get_all_and_sync_revision(false)?;
        let all = with_new(olds, new);
        Ok(all.iter().any(|&i| {
            rs_replicas(&self.rss[i]) > 0
                && self.rss[i]
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DESIRED_REPLICAS))
                    .and_then(|v| v.parse::<i32>().ok())
                    .is_some_and(|desired| desired != self.spec.replicas)
        }))
    }

    /// Index of the new ReplicaSet: the oldest whose template equals the Deployment's.
    fn find_new(&self) -> Option<usize> {
        let template = &self.d.spec.template;
        let mut idx: Vec<usize> = (0..self.rss.len()).collect();
        idx.sort_by(|&a, &b| by_creation(&self.rss[a], &self.rss[b]));
        idx.into_iter().find(|&i| {
            self.rss[i]
                .spec
                .template
                .as_ref()
                .is_some_and(|t| templates_equal_ignoring_hash(t, template))
        })
    }

    /// `getAllReplicaSetsAndSyncRevision`: the new ReplicaSet (created if asked) and all old ones,
    /// with revisions brought up to date.
    fn get_all_and_sync_revision(
        &mut self,
        create: bool,
    ) -> Result<(Option<usize>, Vec<usize>), Error> {
        let existing = self.find_new();
        let olds: Vec<usize> = (0..self.rss.len())
            .filter(|&i| Some(i) != existing)
            .collect();
        let max_old = olds
            .iter()
            .filter_map(|&i| revision_of(&self.rss[i]))
            .max()
            .unwrap_or(0);
        let new_revision = max_old + 1;
        if let Some(i) = existing {
            let changed_annotations = self.set_new_rs_annotations(i, new_revision, true)?;
            let min_ready = self.spec.min_ready_seconds;
            let rs = &mut self.rss[i];
            let spec = &mut rs.spec;
            let min_ready_changed = spec.min_ready_seconds.unwrap_or(0) != min_ready;
            if changed_annotations || min_ready_changed {
                spec.min_ready_seconds = (min_ready != 0).then_some(min_ready);
                self.dirty.insert(rs_name(rs).to_string());
                // The real controller returns right after this update; the Deployment's revision
                // and conditions follow on the next pass.
                return Ok((Some(i), olds));
            }
            let revision = self.rss[i]
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION))
                .cloned()
                .unwrap_or_default();
            self.revision = Some(revision);
            let status = self.current_status();
            if self.spec.progress_deadline.is_some()
                && get_condition(&status, "Progressing").is_none()
            {
                let msg = format!("Found new replica set {:?}", rs_name(&self.rss[i]));
                let c = new_condition(
                    "Progressing",
                    "True",
                    reason::FOUND_NEW_REPLICA_SET,
                    msg,
                    self.now,
                );
                set_condition(self.status(), c);
            }
            return Ok((Some(i), olds));
        }
        if !create {
            return Ok((None, olds));
        }
        let i = self.create_new_rs(&olds, new_revision)?;
        Ok((i, olds))
    }

    /// Builds the new ReplicaSet (`getNewReplicaSet`, creation branch).
    fn create_new_rs(&mut self, olds: &[usize], new_revision: i64) -> Result<Option<usize>, Error> {
        let spec = self.d.spec.clone();
        let collision_count = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = util::template_hash(&spec.template, collision_count);
        let name = format!(
            "{}-{}",
            self.d.metadata.name.as_deref().unwrap_or_default(),
            hash
        );
        if olds.iter().any(|&i| rs_name(&self.rss[i]) == name) {
            // A different template already owns this name: bump the collision count so the next
            // pass hashes differently (the real controller does the same on AlreadyExists).
            let status = self.status();
            status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
            self.stop = true;
            return Ok(None);
        }
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash);
        let labels = template.metadata.as_ref().and_then(|m| m.labels.clone());
        let min_ready = self.spec.min_ready_seconds;
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.d.metadata.namespace.clone(),
                owner_references: Some(vec![controller_ref(
                    "apps/v1",
                    "Deployment",
                    &self.d.metadata,
                )]),
                labels,
                ..Default::default()
            },
            spec: ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: (min_ready != 0).then_some(min_ready),
                selector,
                template: Some(template),
            },
            status: None,
        };
        self.rss.push(rs);
        let i = self.rss.len() - 1;
        let mut all: Vec<usize> = olds.to_vec();
        all.push(i);
        let replicas = self.new_rs_new_replicas(&all, i)?;
        self.rss[i].spec.replicas = Some(replicas);
        self.set_new_rs_annotations(i, new_revision, false)?;
        self.created = Some(i);
        self.revision = Some(new_revision.to_string());
        if replicas > 0 {
            self.events
                .push(format!("Scaled up replica set {name} from 0 to {replicas}"));
        }
        if self.spec.progress_deadline.is_some() {
            let msg = format!("Created new replica set {name:?}");
            let c = new_condition(
                "Progressing",
                "True",
                reason::NEW_REPLICA_SET_CREATED,
                msg,
                self.now,
            );
            set_condition(self.status(), c);
        }
        Ok(Some(i))
    }

    /// `SetNewReplicaSetAnnotations`: copies the Deployment's annotations, raises the revision and
    /// (for a ReplicaSet about to be created) records desired and max replicas.
    fn set_new_rs_annotations(
        &mut self,
        i: usize,
        new_revision: i64,
        exists: bool,
    ) -> Result<bool, Error> {
        let max = self.spec.replicas + self.spec.max_surge()?;
        let desired = self.spec.replicas;
        let deployment_annotations = self.d.metadata.annotations.clone().unwrap_or_default();
        let annotations = self.rss[i]
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new);
        let mut changed = false;
        for (k, v) in &deployment_annotations {
            let skip = matches!(
                k.as_str(),
                LAST_APPLIED
                    | REVISION
                    | REVISION_HISTORY
                    | DESIRED_REPLICAS
                    | MAX_REPLICAS
                    | ROLLBACK_TO
            );
            if skip || annotations.get(k) == Some(v) {
                continue;
            }
            annotations.insert(k.clone(), v.clone());
            changed = true;
        }
        let old = annotations.get(REVISION).cloned();
        let old_int = match old.as_deref() {
            None | Some("") => 0,
            Some(v) => match v.parse::<i64>() {
                Ok(n) => n,
                Err(_) => return Ok(false),
            },
        };
        if old_int < new_revision {
            annotations.insert(REVISION.into(), new_revision.to_string());
            changed = true;
            if let Some(old) = old.filter(|o| !o.is_empty()) {
                // A revision is being re-used: this is a rollback, keep the history.
                let history = annotations
                    .get(REVISION_HISTORY)
                    .cloned()
                    .unwrap_or_default();
                if history.is_empty() {
                    annotations.insert(REVISION_HISTORY.into(), old);
                } else {
                    let mut parts: Vec<&str> = history.split(',').collect();
                    let mut total = history.len() + old.len() + 1;
                    while total > MAX_REVISION_HISTORY_CHARS && !parts.is_empty() {
                        total -= parts.remove(0).len() + 1;
                    }
                    if total <= MAX_REVISION_HISTORY_CHARS {
                        parts.push(&old);
                        let joined = parts.join(",");
                        annotations.insert(REVISION_HISTORY.into(), joined);
                    }
                }
            }
        }
        if !exists && set_replicas_annotations(annotations, desired, max) {
            changed = true;
        }
        Ok(changed)
    }

    /// `NewRSNewReplicas`: how large the new ReplicaSet may be right now.
    fn new_rs_new_replicas(&self, all: &[usize], new: usize) -> Result<i32, Error> {
        let new_replicas = rs_replicas(&self.rss[new]);
        let Some((surge, _)) = &self.spec.rolling else {
            return Ok(self.spec.replicas);
        };
        let max_surge = scaled_value(surge, self.spec.replicas, true)?;
        let current: i32 = all.iter().map(|&i| rs_replicas(&self.rss[i])).sum();
        let max_total = self.spec.replicas + max_surge;
        if current >= max_total {
            return Ok(new_replicas);
        }
        let scale_up = (max_total - current).min(self.spec.replicas - new_replicas);
        Ok(new_replicas + scale_up)
    }

    /// `scaleReplicaSetAndRecordEvent`: scales when the size differs; says whether it did.
    fn scale_and_record(&mut self, i: usize, size: i32) -> Result<bool, Error> {
        if rs_replicas(&self.rss[i]) == size {
            return Ok(false);
        }
        self.scale_rs(i, size)?;
        Ok(true)
    }

    /// `scaleReplicaSet`: sets the size and the desired/max annotations.
    fn scale_rs(&mut self, i: usize, size: i32) -> Result<(), Error> {
        let max = self.spec.replicas + self.spec.max_surge()?;
        let desired = self.spec.replicas;
        let rs = &mut self.rss[i];
        let current = rs_replicas(rs);
        let size_changed = current != size;
        let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
        let annotations_changed = set_replicas_annotations(annotations, desired, max);
        if size_changed || annotations_changed {
            rs.spec.replicas = Some(size);
            let name = rs_name(rs).to_string();
            if size_changed {
                let direction = if size > current { "up" } else { "down" };
                self.events.push(format!(
                    "Scaled {direction} replica set {name} from {current} to {size}"
                ));
            }
            self.dirty.insert(name);
        }
        Ok(())
    }

    /// `scale`: proportional scaling for scaling events and paused Deployments.
    fn scale(&mut self, new: Option<usize>, olds: &[usize]) -> Result<(), Error> {
        if let Some(i) = self.find_active_or_latest(new, olds) {
            if rs_replicas(&self.rss[i]) != self.spec.replicas {
                self.scale_and_record(i, self.spec.replicas)?;
            }
            return Ok(());
        }
        if new.is_some_and(|n| self.is_saturated(n)) {
            let active: Vec<usize> = olds
                .iter()
                .copied()
                .filter(|&i| rs_replicas(&self.rss[i]) > 0)
                .collect();
            for i in active {
                self.scale_and_record(i, 0)?;
            }
            return Ok(());
        }
        if self.spec.rolling.is_none() {
            return Ok(());
        }
        let mut all: Vec<usize> = with_new(olds.to_vec(), new)
            .into_iter()
            .filter(|&i| rs_replicas(&self.rss[i]) > 0)
            .collect();
        let all_replicas: i32 = all.iter().map(|&i| rs_replicas(&self.rss[i])).sum();
        let allowed = if self.spec.replicas > 0 {
            self.spec.replicas + self.spec.max_surge()?
        } else {
            0
        };
        let to_add = allowed - all_replicas;
        let rss = &self.rss;
        match to_add.cmp(&0) {
            // Larger first; among equals the newer grows first and the older shrinks first.
            Ordering::Greater => all.sort_by(|&a, &b| {
                rs_replicas(&rss[b])
                    .cmp(&rs_replicas(&rss[a]))
                    .then_with(|| by_creation(&rss[b], &rss[a]))
            }),
            Ordering::Less => all.sort_by(|&a, &b| {
                rs_replicas(&rss[b])
                    .cmp(&rs_replicas(&rss[a]))
                    .then_with(|| by_creation(&rss[a], &rss[b]))
            }),
            Ordering::Equal => {}
        }
        let mut added = 0;
        let mut sizes: Vec<i32> = Vec::with_capacity(all.len());
        for &i in &all {
            let current = rs_replicas(&self.rss[i]);
            if to_add != 0 {
                let proportion = self.proportion(i, to_add, added);
                sizes.push(current + proportion);
                added += proportion;
            } else {
                sizes.push(current);
            }
        }
        for (pos, &i) in all.iter().enumerate() {
            if pos == 0 && to_add != 0 {
                sizes[0] = (sizes[0] + to_add - added).max(0);
            }
            self.scale_rs(i, sizes[pos])?;
        }
        Ok(())
    }

    /// `GetProportion`.
    fn proportion(&self, i: usize, to_add: i32, added: i32) -> i32 {
        let rs = &self.rss[i];
        if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
            return 0;
        }
        let fraction = self.fraction(rs);
        let allowed = to_add - added;
        if to_add > 0 {
            fraction.min(allowed)
        } else {
            fraction.max(allowed)
        }
    }

    /// `getReplicaSetFraction`.
    fn fraction(&self, rs: &ReplicaSet) -> i32 {
        if self.spec.replicas == 0 {
            return -rs_replicas(rs);
        }
        let deployment_replicas = self.spec.replicas + self.spec.max_surge().unwrap_or(0);
        let annotated = rs
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(MAX_REPLICAS))
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or_else(|| self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
        if annotated == 0 {
            return 0;
        }
        let size = f64::from(rs_replicas(rs) * deployment_replicas) / f64::from(annotated);
        // Go's RoundToInt32 rounds half away from zero, like f64::round.
        size.round() as i32 - rs_replicas(rs)
    }

    /// `FindActiveOrLatest`.
    fn find_active_or_latest(&self, new: Option<usize>, olds: &[usize]) -> Option<usize> {
        if new.is_none() && olds.is_empty() {
            return None;
        }
        let mut sorted_olds = olds.to_vec();
        sorted_olds.sort_by(|&a, &b| by_creation(&self.rss[b], &self.rss[a]));
        let active: Vec<usize> = with_new(sorted_olds.clone(), new)
            .into_iter()
            .filter(|&i| rs_replicas(&self.rss[i]) > 0)
            .collect();
        match active.len() {
            0 => new.or_else(|| sorted_olds.first().copied()),
            1 => Some(active[0]),
            _ => None,
        }
    }

    /// `IsSaturated`.
    fn is_saturated(&self, i: usize) -> bool {
        let rs = &self.rss[i];
        let desired = rs
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DESIRED_REPLICAS))
            .and_then(|v| v.parse::<i32>().ok());
        desired == Some(self.spec.replicas)
            && rs_replicas(rs) == self.spec.replicas
            && rs_available(rs) == self.spec.replicas
    }

    /// `rolloutRolling`.
    fn rollout_rolling(&mut self) -> Result<(), Error> {
        let (new, olds) = self.get_all_and_sync_revision(true)?;
        if self.stop {
            return Ok(());
        }
        let Some(new) = new else {
            return Ok(());
        };
        let all = with_new(olds.clone(), Some(new));
        if self.reconcile_new(&all, new)? {
            return self.sync_rollout_status(&all, Some(new));
        }
        let active_olds: Vec<usize> = olds
            .iter()
            .copied()
            .filter(|&i| rs_replicas(&self.rss[i]) > 0)
            .collect();
        if self.reconcile_olds(&all, &active_olds, new)? {
            return self.sync_rollout_status(&all, Some(new));
        }
        let status = self.current_status();
        if self.complete(&status) {
            self.cleanup(&olds);
        }
        self.sync_rollout_status(&all, Some(new))
    }

    /// `reconcileNewReplicaSet`.
    fn reconcile_new(&mut self, all: &[usize], new: usize) -> Result<bool, Error> {
        let current = rs_replicas(&self.rss[new]);
        if current == self.spec.replicas {
            return Ok(false);
        }
        if current > self.spec.replicas {
            return self.scale_and_record(new, self.spec.replicas);
        }
        let size = self.new_rs_new_replicas(all, new)?;
        self.scale_and_record(new, size)
    }

    /// `reconcileOldReplicaSets`.
    fn reconcile_olds(&mut self, all: &[usize], olds: &[usize], new: usize) -> Result<bool, Error> {
        let old_pods: i32 = olds.iter().map(|&i| rs_replicas(&self.rss[i])).sum();
        if old_pods == 0 {
            return Ok(false);
        }
        let all_pods: i32 = all.iter().map(|&i| rs_replicas(&self.rss[i])).sum();
        let min_available = self.spec.replicas - self.spec.max_unavailable()?;
        let new_unavailable = rs_replicas(&self.rss[new]) - rs_available(&self.rss[new]);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let cleaned = self.cleanup_unhealthy(olds, max_scaled_down)?;
        let active_all = with_new(olds.to_vec(), Some(new));
        let scaled = self.scale_down_olds_for_rolling(&active_all, olds)?;
        Ok(cleaned + scaled > 0)
    }

    /// `cleanupUnhealthyReplicas`: first removes old pods that are not available anyway.
    fn cleanup_unhealthy(&mut self, olds: &[usize], max_cleanup: i32) -> Result<i32, Error> {
        let mut sorted = olds.to_vec();
        sorted.sort_by(|&a, &b| by_creation(&self.rss[a], &self.rss[b]));
        let mut total = 0;
        for i in sorted {
            if total >= max_cleanup {
                break;
            }
            let replicas = rs_replicas(&self.rss[i]);
            let available = rs_available(&self.rss[i]);
            if replicas == 0 || replicas == available {
                continue;
            }
            let count = (max_cleanup - total).min(replicas - available);
            self.scale_and_record(i, replicas - count)?;
            total += count;
        }
        Ok(total)
    }

    /// `scaleDownOldReplicaSetsForRollingUpdate`.
    fn scale_down_olds_for_rolling(&mut self, all: &[usize], olds: &[usize]) -> Result<i32, Error> {
        let min_available = self.spec.replicas - self.spec.max_unavailable()?;
        let available: i32 = all.iter().map(|&i| rs_available(&self.rss[i])).sum();
        if available <= min_available {
            return Ok(0);
        }
        let mut sorted = olds.to_vec();
        sorted.sort_by(|&a, &b| by_creation(&self.rss[a], &self.rss[b]));
        let target = available - min_available;
        let mut total = 0;
        for i in sorted {
            if total >= target {
                break;
            }
            let replicas = rs_replicas(&self.rss[i]);
            if replicas == 0 {
                continue;
            }
            let count = replicas.min(target - total);
            self.scale_and_record(i, replicas - count)?;
            total += count;
        }
        Ok(total)
    }

    /// `rolloutRecreate`.
    fn rollout_recreate(&mut self, pods: &[Pod]) -> Result<(), Error> {
        let (mut new, olds) = self.get_all_and_sync_revision(false)?;
        let all = with_new(olds.clone(), new);
        let mut scaled_down = false;
        for &i in &olds {
            if rs_replicas(&self.rss[i]) > 0 && self.scale_and_record(i, 0)? {
                scaled_down = true;
            }
        }
        if scaled_down {
            return self.sync_rollout_status(&all, new);
        }
        if self.old_pods_running(&olds, pods) {
            return self.sync_rollout_status(&all, new);
        }
        if new.is_none() {
            let (created, _) = self.get_all_and_sync_revision(true)?;
            if self.stop {
                return Ok(());
            }
            new = created;
        }
        let all = with_new(olds.clone(), new);
        if let Some(n) = new {
            self.scale_and_record(n, self.spec.replicas)?;
        }
        let status = self.current_status();
        if self.complete(&status) {
            self.cleanup(&olds);
        }
        self.sync_rollout_status(&all, new)
    }

    /// `oldPodsRunning`.
    fn old_pods_running(&self, olds: &[usize], pods: &[Pod]) -> bool {
        if olds
            .iter()
            .map(|&i| rs_status_replicas(&self.rss[i]))
            .sum::<i32>()
            > 0
        {
            return true;
        }
        let old_uids: BTreeSet<&str> = olds
            .iter()
            .filter_map(|&i| self.rss[i].metadata.uid.as_deref())
            .collect();
        pods.iter().any(|p| {
            controller_uid(&p.metadata).is_some_and(|u| old_uids.contains(u))
                && !util::pod_terminal(p)
        })
    }

    /// `cleanupDeployment`: deletes the oldest empty ReplicaSets beyond revisionHistoryLimit.
    fn cleanup(&mut self, olds: &[usize]) {
        let Some(limit) = self.spec.revision_history_limit else {
            return;
        };
        let mut cleanable: Vec<usize> = olds
            .iter()
            .copied()
            .filter(|&i| self.rss[i].metadata.deletion_timestamp.is_none())
            .collect();
        let diff = cleanable.len() as i64 - i64::from(limit);
        if diff <= 0 {
            return;
        }
        cleanable.sort_by(|&a, &b| {
            let (ra, rb) = (
                revision_of(&self.rss[a]).unwrap_or(0),
                revision_of(&self.rss[b]).unwrap_or(0),
            );
            ra.cmp(&rb)
                .then_with(|| by_creation(&self.rss[a], &self.rss[b]))
        });
        for &i in cleanable.iter().take(diff as usize) {
            let rs = &self.rss[i];
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if rs_status_replicas(rs) != 0
                || rs_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
                || self.dirty.contains(rs_name(rs))
            {
                continue;
            }
            self.deleted.push(rs_name(rs).to_string());
        }
    }

    /// `DeploymentComplete`.
    fn complete(&self, status: &DeploymentStatus) -> bool {
        let replicas = self.spec.replicas;
        status.updated_replicas.unwrap_or(0) == replicas
            && status.replicas.unwrap_or(0) == replicas
            && status.available_replicas.unwrap_or(0) == replicas
            && status.observed_generation.unwrap_or(0) >= self.generation()
    }

    /// `calculateStatus`.
    fn calculate_status(
        &self,
        all: &[usize],
        new: Option<usize>,
    ) -> Result<DeploymentStatus, Error> {
        let rss: Vec<&ReplicaSet> = all.iter().map(|&i| &self.rss[i]).collect();
        let available: i32 = rss.iter().map(|rs| rs_available(rs)).sum();
        let total: i32 = rss.iter().map(|rs| rs_replicas(rs)).sum();
        let terminating = rss.iter().try_fold(0, |acc, rs| {
            rs.status
                .as_ref()
                .and_then(|s| s.terminating_replicas)
                .map(|t| acc + t)
        });
        let current = self.current_status();
        let mut status = DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: util::nz(rss.iter().map(|rs| rs_status_replicas(rs)).sum()),
            updated_replicas: util::nz(new.map_or(0, |n| rs_status_replicas(&self.rss[n]))),
            ready_replicas: util::nz(rss.iter().map(|rs| rs_ready(rs)).sum()),
            available_replicas: util::nz(available),
            unavailable_replicas: util::nz((total - available).max(0)),
            terminating_replicas: terminating,
            collision_count: current.collision_count,
            conditions: current.conditions.clone(),
        };
        let condition = if available >= self.spec.replicas - self.spec.max_unavailable()? {
            new_condition(
                "Available",
                "True",
                reason::MINIMUM_REPLICAS_AVAILABLE,
                "Deployment has minimum availability.".into(),
                self.now,
            )
        } else {
            new_condition(
                "Available",
                "False",
                reason::MINIMUM_REPLICAS_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
                self.now,
            )
        };
        set_condition(&mut status, condition);
        Ok(status)
    }

    /// `syncDeploymentStatus`.
    fn sync_deployment_status(&mut self, all: &[usize], new: Option<usize>) -> Result<(), Error> {
        let status = self.calculate_status(all, new)?;
        self.d.status = Some(status);
        Ok(())
    }

    /// `syncRolloutStatus`: counts plus the Progressing condition.
    fn sync_rollout_status(&mut self, all: &[usize], new: Option<usize>) -> Result<(), Error> {
        let mut status = self.calculate_status(all, new)?;
        let Some(deadline) = self.spec.progress_deadline else {
            remove_condition(&mut status, "Progressing");
            self.d.status = Some(status);
            return Ok(());
        };
        let old = self.current_status();
        let current = get_condition(&old, "Progressing").cloned();
        let already_complete = status.replicas == status.updated_replicas
            && current
                .as_ref()
                .is_some_and(|c| c.reason.as_deref() == Some(reason::NEW_REPLICA_SET_AVAILABLE));
        let new_name = new.map(|n| rs_name(&self.rss[n]).to_string());
        let d_name = self.d.metadata.name.clone().unwrap_or_default();
        if !already_complete {
            if self.complete(&status) {
                let msg = match &new_name {
                    Some(n) => format!("ReplicaSet {n:?} has successfully progressed."),
                    None => format!("Deployment {d_name:?} has successfully progressed."),
                };
                set_condition(
                    &mut status,
                    new_condition(
                        "Progressing",
                        "True",
                        reason::NEW_REPLICA_SET_AVAILABLE,
                        msg,
                        self.now,
                    ),
                );
            } else if progressing(&old, &status) {
                let msg = match &new_name {
                    Some(n) => format!("ReplicaSet {n:?} is progressing."),
                    None => format!("Deployment {d_name:?} is progressing."),
                };
                let mut c = new_condition(
                    "Progressing",
                    "True",
                    reason::REPLICA_SET_UPDATED,
                    msg,
                    self.now,
                );
                // Progress refreshes lastUpdateTime even when the reason stays the same.
                if let Some(cur) = &current {
                    if cur.status.as_deref() == Some("True") {
                        c.last_transition_time = cur.last_transition_time.clone();
                    }
                    remove_condition(&mut status, "Progressing");
                }
                set_condition(&mut status, c);
            } else if self.timed_out(&status, deadline) {
                let msg = match &new_name {
                    Some(n) => format!("ReplicaSet {n:?} has timed out progressing."),
                    None => format!("Deployment {d_name:?} has timed out progressing."),
                };
                set_condition(
                    &mut status,
                    new_condition(
                        "Progressing",
                        "False",
                        reason::PROGRESS_DEADLINE_EXCEEDED,
                        msg,
                        self.now,
                    ),
                );
            }
        }
        // The simulated ReplicaSets never report ReplicaFailure.
        remove_condition(&mut status, "ReplicaFailure");
        // `requeueStuckDeployment`: look again when the deadline passes.
        if let Some(cond) = get_condition(&status, "Progressing")
            && !self.complete(&status)
            && cond.reason.as_deref() != Some(reason::PROGRESS_DEADLINE_EXCEEDED)
            // A finished rollout never times out, however its pods fare later.
            && cond.reason.as_deref() != Some(reason::NEW_REPLICA_SET_AVAILABLE)
            && let Some(updated) = &cond.last_update_time
        {
            let at = add_secs(updated.0, i64::from(deadline) + 1);
            // A deadline already behind us was checked in this pass.
            self.requeue_at = (at > self.now).then_some(at);
        }
        self.d.status = Some(status);
        Ok(())
    }

    /// `DeploymentTimedOut`.
    fn timed_out(&self, status: &DeploymentStatus, deadline: i32) -> bool {
        let Some(cond) = get_condition(status, "Progressing") else {
            return false;
        };
        match cond.reason.as_deref() {
            Some(reason::NEW_REPLICA_SET_AVAILABLE) => false,
            Some(reason::PROGRESS_DEADLINE_EXCEEDED) => true,
            _ => cond
                .last_update_time
                .as_ref()
                .is_some_and(|t| add_secs(t.0, i64::from(deadline)) < self.now),
        }
    }
}

/// `DeploymentProgressing`: more updated, ready or available pods, or fewer old ones.
fn progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let get = |v: Option<i32>| v.unwrap_or(0);
    let old_olds = get(old.replicas) - get(old.updated_replicas);
    let new_olds = get(new.replicas) - get(new.updated_replicas);
    get(new.updated_replicas) > get(old.updated_replicas)
        || new_olds < old_olds
        || get(new.ready_replicas) > get(old.ready_replicas)
        || get(new.available_replicas) > get(old.available_replicas)
}

/// `SetReplicasAnnotations`.
fn set_replicas_annotations(
    annotations: &mut BTreeMap<String, String>,
    desired: i32,
    max: i32,
) -> bool {
    let mut changed = false;
    for (key, value) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let value = value.to_string();
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.into(), value);
            changed = true;
        }
    }
    changed
}

fn with_new(mut olds: Vec<usize>, new: Option<usize>) -> Vec<usize> {
    olds.extend(new);
    olds
}

#[cfg(test)]
#[path = "deployment_tests.rs"]
mod tests;
