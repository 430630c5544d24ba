//! Table and sequence tests of the Deployment planner against the real controller's behaviour
//! (pure, no I/O): a tiny in-memory world applies each plan, and ReplicaSets report their pods
//! ready unless the template carries a fault annotation.
use super::*;
use crate::sim::kubelet::FAULT_ANNOTATION;
use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, ReplicaSetStatus};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn deployment(replicas: i32) -> Deployment {
    let (selector, template) =
        crate::sim::testing::selected_template("web", crate::sim::testing::app_pod_spec());
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("uid-web".into()),
            generation: Some(1),
            annotations: Some(BTreeMap::from([("team".to_string(), "a".to_string())])),
            ..Default::default()
        },
        spec: DeploymentSpec {
            replicas: Some(replicas),
            progress_deadline_seconds: Some(3),
            selector,
            template,
            ..Default::default()
        },
        status: None,
    }
}

/// The API server plus the ReplicaSet controller and kubelets, reduced to what the Deployment
/// controller observes.
struct World {
    d: Deployment,
    rss: Vec<ReplicaSet>,
    now: Timestamp,
    uid: u32,
    /// (total spec replicas, total available) after every step, to check the rolling bounds.
    trace: Vec<(i32, i32)>,
}

impl World {
    fn new(d: Deployment) -> Self {
        World {
            d,
            rss: Vec::new(),
            now: t(0),
            uid: 0,
            trace: Vec::new(),
        }
    }

    /// One deployment sync; returns whether it changed anything.
    fn sync(&mut self) -> bool {
        let plan = match plan(&self.d, &self.rss, &[], self.now) {
            Ok(p) => p,
            Err(e) => panic!("plan failed: {e}"),
        };
        let changed = plan.create.is_some()
            || !plan.update.is_empty()
            || !plan.delete.is_empty()
            || plan.revision.is_some()
            || plan.status.is_some();
        if let Some(mut rs) = plan.create {
            self.uid += 1;
            rs.metadata.uid = Some(format!("rs-{}", self.uid));
            rs.metadata.generation = Some(1);
            // Strictly increasing creation times keep the ordering well defined.
            rs.metadata.creation_timestamp = Some(Time(add_secs(self.now, i64::from(self.uid))));
            self.rss.push(rs);
        }
        for rs in plan.update {
            if let Some(current) = self
                .rss
                .iter_mut()
                .find(|r| r.metadata.name == rs.metadata.name)
            {
                let generation =
                    current.metadata.generation.unwrap_or(1) + i64::from(current.spec != rs.spec);
                *current = rs;
                current.metadata.generation = Some(generation);
            }
        }
        self.rss.retain(|rs| {
            !plan
                .delete
                .contains(&rs.metadata.name.clone().unwrap_or_default())
        });
        if let Some(r) = plan.revision {
            self.d
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(REVISION.into(), r);
        }
        if let Some(s) = plan.status {
            self.d.status = Some(s);
        }
        changed
    }

    /// The ReplicaSet controller and kubelets catch up: every pod exists, healthy ones are ready.
    fn pods_catch_up(&mut self) -> bool {
        let mut changed = false;
        for rs in &mut self.rss {
            let replicas = rs.spec.replicas.unwrap_or(1);
            let healthy = rs
                .spec
                .template
                .as_ref()
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.annotations.as_ref())
                .is_none_or(|a| !a.contains_key(FAULT_ANNOTATION));
            let ready = if healthy { replicas } else { 0 };
            let status = ReplicaSetStatus {
                replicas,
                fully_labeled_replicas: Some(replicas),
                ready_replicas: Some(ready),
                available_replicas: Some(ready),
                terminating_replicas: Some(0),
                observed_generation: rs.metadata.generation,
                conditions: None,
            };
            if rs.status.as_ref() != Some(&status) {
                rs.status = Some(status);
                changed = true;
            }
        }
        changed
    }

    fn record(&mut self) {
        let total = self.rss.iter().map(|r| r.spec.replicas.unwrap_or(0)).sum();
        let available = self.rss.iter().map(rs_available).sum();
        self.trace.push((total, available));
    }

    /// Alternates syncs and pod updates until nothing changes.
    fn settle(&mut self) {
        for _ in 0..100 {
            let a = self.sync();
            self.record();
            let b = self.pods_catch_up();
            if !a && !b {
                return;
            }
        }
        panic!("deployment did not settle");
    }

    fn status(&self) -> DeploymentStatus {
        self.d.status.clone().unwrap_or_default()
    }

    fn condition(&self, type_: &str) -> (String, String, String) {
        let status = self.status();
        let c = get_condition(&status, type_).cloned().unwrap_or_default();
        (
            c.status.unwrap_or_default(),
            c.reason.unwrap_or_default(),
            c.message.unwrap_or_default(),
        )
    }

    /// The Deployment's revision annotation.
    fn revision(&self) -> Option<&str> {
        let annotations = self.d.metadata.annotations.as_ref();
        annotations
            .and_then(|a| a.get(REVISION))
            .map(String::as_str)
    }

    fn new_rs(&self) -> ReplicaSet {
        let w = Work::new(&self.d, self.rss.clone(), self.now);
        w.find_new()
            .map(|i| self.rss[i].clone())
            .unwrap_or_default()
    }

    fn change_template(&mut self, f: impl FnOnce(&mut PodTemplateSpec)) {
        f(&mut self.d.spec.template);
        self.d.metadata.generation = Some(self.d.metadata.generation.unwrap_or(1) + 1);
    }

    fn scale(&mut self, replicas: i32) {
        self.d.spec.replicas = Some(replicas);
        self.d.metadata.generation = Some(self.d.metadata.generation.unwrap_or(1) + 1);
    }
}

fn counts(s: &DeploymentStatus) -> [Option<i32>; 5] {
    [
        s.replicas,
        s.updated_replicas,
        s.ready_replicas,
        s.available_replicas,
        s.unavailable_replicas,
    ]
}

/// The types of a status's conditions, in order.
fn condition_types(s: &DeploymentStatus) -> Vec<String> {
    let conditions = s.conditions.iter().flatten();
    conditions.filter_map(|c| c.type_.clone()).collect()
}

fn annotation(rs: &ReplicaSet, key: &str) -> Option<String> {
    rs.metadata.annotations.as_ref()?.get(key).cloned()
}

#[test]
fn the_first_sync_creates_a_hashed_replica_set_and_reports_it() {
    let mut w = World::new(deployment(3));
    w.sync();
    let rs = w.rss.first().cloned().unwrap_or_default();
    let name = rs.metadata.name.clone().unwrap_or_default();
    let hash = name.strip_prefix("web-").unwrap_or_default().to_string();
    assert!(!hash.is_empty());
    let label =
        |m: Option<&BTreeMap<String, String>>| m.and_then(|l| l.get(POD_TEMPLATE_HASH)).cloned();
    assert_eq!(label(rs.metadata.labels.as_ref()), Some(hash.clone()));
    assert_eq!(
        label(rs.spec.selector.match_labels.as_ref()),
        Some(hash.clone())
    );
    assert_eq!(
        label(
            rs.spec
                .template
                .as_ref()
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.labels.as_ref())
        ),
        Some(hash)
    );
    assert_eq!(rs.spec.replicas, Some(3));
    assert_eq!(annotation(&rs, REVISION).as_deref(), Some("1"));
    assert_eq!(annotation(&rs, DESIRED_REPLICAS).as_deref(), Some("3"));
    assert_eq!(annotation(&rs, MAX_REPLICAS).as_deref(), Some("4"));
    assert_eq!(
        annotation(&rs, "team").as_deref(),
        Some("a"),
        "deployment annotations are copied"
    );
    let owner = rs.metadata.owner_references.unwrap_or_default();
    assert_eq!(owner[0].kind, "Deployment");
    assert_eq!(
        (owner[0].controller, owner[0].block_owner_deletion),
        (Some(true), Some(true))
    );
    assert_eq!(w.revision(), Some("1"));
    let status = w.status();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(counts(&status), [None, None, None, None, Some(3)]);
    let types = condition_types(&status);
    assert_eq!(types, vec!["Progressing", "Available"]);
    assert_eq!(
        w.condition("Progressing"),
        (
            "True".into(),
            "NewReplicaSetCreated".into(),
            format!("Created new replica set {name:?}")
        )
    );
    assert_eq!(
        w.condition("Available"),
        (
            "False".into(),
            "MinimumReplicasUnavailable".into(),
            "Deployment does not have minimum availability.".into()
        )
    );
}

#[test]
fn a_new_deployment_converges_to_the_real_controllers_final_status() {
    let mut w = World::new(deployment(3));
    w.settle();
    let status = w.status();
    let name = w.new_rs().metadata.name.unwrap_or_default();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(counts(&status), [Some(3), Some(3), Some(3), Some(3), None]);
    assert_eq!(status.terminating_replicas, Some(0));
    let types = condition_types(&status);
    assert_eq!(
        types,
        vec!["Available", "Progressing"],
        "the order kubectl shows"
    );
    assert_eq!(
        w.condition("Available"),
        (
            "True".into(),
            "MinimumReplicasAvailable".into(),
            "Deployment has minimum availability.".into()
        )
    );
    assert_eq!(
        w.condition("Progressing"),
        (
            "True".into(),
            "NewReplicaSetAvailable".into(),
            format!("ReplicaSet {name:?} has successfully progressed.")
        )
    );
}

#[test]
fn progressing_keeps_its_transition_time_while_the_reason_changes() {
    let mut w = World::new(deployment(2));
    w.sync();
    let created = get_condition(&w.status(), "Progressing")
        .cloned()
        .unwrap_or_default();
    // Within the 3s deadline.
    w.now = t(2);
    w.settle();
    let done = get_condition(&w.status(), "Progressing")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        done.reason.as_deref(),
        Some(reason::NEW_REPLICA_SET_AVAILABLE)
    );
    assert_eq!(done.last_transition_time, created.last_transition_time);
    assert_eq!(done.last_update_time, Some(util::time(t(2))));
}

#[test]
fn scaling_resizes_the_replica_set_and_updates_its_annotations() {
    for (from, to, max) in [(3, 5, "7"), (5, 2, "3")] {
        let mut w = World::new(deployment(from));
        w.settle();
        w.scale(to);
        w.settle();
        let rs = w.new_rs();
        assert_eq!(w.rss.len(), 1);
        assert_eq!(rs.spec.replicas, Some(to));
        assert_eq!(annotation(&rs, DESIRED_REPLICAS), Some(to.to_string()));
        assert_eq!(annotation(&rs, MAX_REPLICAS).as_deref(), Some(max));
        let status = w.status();
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(
            counts(&status),
            [Some(to), Some(to), Some(to), Some(to), None]
        );
        assert_eq!(w.condition("Progressing").1, "NewReplicaSetAvailable");
    }
}

#[test]
fn scaling_to_zero_keeps_the_deployment_available() {
    let mut w = World::new(deployment(3));
    w.settle();
    w.scale(0);
    w.settle();
    assert_eq!(w.new_rs().spec.replicas, Some(0));
    assert_eq!(counts(&w.status()), [None, None, None, None, None]);
    assert_eq!(w.condition("Available").1, "MinimumReplicasAvailable");
}

#[test]
fn an_image_change_rolls_out_a_second_revision_within_surge_and_unavailability_bounds() {
    let mut w = World::new(deployment(4));
    w.settle();
    let old_name = w.new_rs().metadata.name.unwrap_or_default();
    w.change_template(|t| {
        if let Some(spec) = t.spec.as_mut() {
            spec.containers[0].image = Some("nginx:2".into());
        }
    });
    w.trace.clear();
    w.settle();
    let new = w.new_rs();
    let new_name = new.metadata.name.clone().unwrap_or_default();
    assert_ne!(new_name, old_name);
    assert_eq!(w.rss.len(), 2, "the old ReplicaSet stays for rollbacks");
    let old = w
        .rss
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(old_name.as_str()))
        .cloned()
        .unwrap_or_default();
    assert_eq!(old.spec.replicas, Some(0));
    assert_eq!(annotation(&old, REVISION).as_deref(), Some("1"));
    assert_eq!(annotation(&new, REVISION).as_deref(), Some("2"));
    assert_eq!(w.revision(), Some("2"));
    // 25% of 4: one extra pod at most, one unavailable at most.
    for (total, available) in &w.trace {
        assert!(*total <= 5, "surge exceeded: {:?}", w.trace);
        assert!(*available >= 3, "too many unavailable: {:?}", w.trace);
    }
    let status = w.status();
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(counts(&status), [Some(4), Some(4), Some(4), Some(4), None]);
    assert_eq!(
        w.condition("Progressing"),
        (
            "True".into(),
            "NewReplicaSetAvailable".into(),
            format!("ReplicaSet {new_name:?} has successfully progressed.")
        )
    );
}

#[test]
fn a_faulty_template_exceeds_the_progress_deadline_while_old_pods_keep_serving() {
    let mut w = World::new(deployment(3));
    w.settle();
    w.change_template(|t| {
        t.metadata.get_or_insert_with(Default::default).annotations = Some(BTreeMap::from([(
            FAULT_ANNOTATION.to_string(),
            "crashloop".to_string(),
        )]));
    });
    w.settle();
    let new_name = w.new_rs().metadata.name.unwrap_or_default();
    assert_eq!(w.condition("Progressing").1, "ReplicaSetUpdated");
    w.now = t(3);
    w.settle();
    assert_eq!(
        w.condition("Progressing").1,
        "ReplicaSetUpdated",
        "not before the deadline"
    );
    w.now = t(4);
    w.settle();
    assert_eq!(
        w.condition("Progressing"),
        (
            "False".into(),
            "ProgressDeadlineExceeded".into(),
            format!("ReplicaSet {new_name:?} has timed out progressing.")
        )
    );
    assert_eq!(w.condition("Available").1, "MinimumReplicasAvailable");
    let status = w.status();
    // maxUnavailable rounds down to 0 for 3 replicas: all old pods stay, one new pod surges.
    assert_eq!(
        counts(&status),
        [Some(4), Some(1), Some(3), Some(3), Some(1)]
    );
}

#[test]
fn a_stuck_rollout_asks_to_be_looked_at_after_the_deadline() {
    let mut d = deployment(1);
    d.spec
        .template
        .metadata
        .get_or_insert_with(Default::default)
        .annotations = Some(BTreeMap::from([(
        FAULT_ANNOTATION.to_string(),
        "unready".to_string(),
    )]));
    let mut w = World::new(d);
    w.settle();
    let p = plan(&w.d, &w.rss, &[], w.now).unwrap_or_default();
    assert_eq!(p.requeue_at, Some(t(4)));
}

#[test]
fn pausing_and_resuming_are_reported_as_unknown_progress() {
    let mut w = World::new(deployment(2));
    w.settle();
    w.d.spec.paused = Some(true);
    w.settle();
    assert_eq!(
        w.condition("Progressing"),
        (
            "Unknown".into(),
            "DeploymentPaused".into(),
            "Deployment is paused".into()
        )
    );
    w.change_template(|t| {
        if let Some(spec) = t.spec.as_mut() {
            spec.containers[0].image = Some("nginx:2".into());
        }
    });
    w.settle();
    assert_eq!(w.rss.len(), 1, "a paused deployment does not roll out");
    w.d.spec.paused = Some(false);
    w.sync();
    assert_eq!(w.rss.len(), 2);
    w.settle();
    assert_eq!(w.condition("Progressing").1, "NewReplicaSetAvailable");
}

#[test]
fn old_replica_sets_beyond_the_history_limit_are_deleted() {
    let mut d = deployment(1);
    d.spec.revision_history_limit = Some(1);
    let mut w = World::new(d);
    w.settle();
    for image in ["nginx:2", "nginx:3", "nginx:4"] {
        w.change_template(|t| {
            if let Some(spec) = t.spec.as_mut() {
                spec.containers[0].image = Some(image.into());
            }
        });
        w.settle();
    }
    assert_eq!(w.rss.len(), 2);
    let revisions: BTreeSet<String> = w
        .rss
        .iter()
        .filter_map(|r| annotation(r, REVISION))
        .collect();
    assert_eq!(
        revisions,
        BTreeSet::from(["3".to_string(), "4".to_string()])
    );
}

#[test]
fn recreate_scales_the_old_replica_set_down_before_creating_the_new_one() {
    let mut d = deployment(2);
    d.spec.strategy = Some(DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    });
    let mut w = World::new(d);
    w.settle();
    w.change_template(|t| {
        if let Some(spec) = t.spec.as_mut() {
            spec.containers[0].image = Some("nginx:2".into());
        }
    });
    w.sync();
    assert_eq!(w.rss.len(), 1, "no new ReplicaSet while old pods run");
    assert_eq!(w.rss[0].spec.replicas, Some(0));
    w.settle();
    assert_eq!(w.rss.len(), 2);
    assert_eq!(
        counts(&w.status()),
        [Some(2), Some(2), Some(2), Some(2), None]
    );
}

#[test]
fn fenceposts_round_surge_up_and_unavailability_down() {
    let cases = [
        (3, "25%", "25%", (1, 0)),
        (10, "25%", "25%", (3, 2)),
        (1, "0%", "1%", (0, 1)),
        (4, "50%", "0%", (2, 0)),
    ];
    for (replicas, surge, unavailable, want) in cases {
        let mut d = deployment(replicas);
        d.spec.strategy = Some(DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(k8s_openapi::api::apps::v1::RollingUpdateDeployment {
                max_surge: Some(IntOrString::String(surge.into())),
                max_unavailable: Some(IntOrString::String(unavailable.into())),
            }),
        });
        let r = Resolved::of(&d);
        assert_eq!(
            r.fenceposts().ok(),
            Some(want),
            "{replicas} {surge} {unavailable}"
        );
    }
}

#[test]
fn an_empty_selector_only_acknowledges_the_generation() {
    let mut d = deployment(1);
    d.spec.selector = LabelSelector::default();
    let p = plan(&d, &[], &[], t(0)).unwrap_or_default();
    assert!(p.create.is_none());
    assert_eq!(p.status.and_then(|s| s.observed_generation), Some(1));
}

/// One proportional-scaling scenario: the Deployment goes from `from` to `to` replicas (and from
/// `surge_from` to `surge_to` maxSurge) while several ReplicaSets are active.
struct ScaleCase {
    name: &'static str,
    from: i32,
    to: i32,
    surge_from: i32,
    surge_to: i32,
    /// The new ReplicaSet's size, if there is one (its template matches the Deployment's).
    new: Option<i32>,
    /// Old ReplicaSets, newest first.
    olds: &'static [i32],
    want_new: Option<i32>,
    want_olds: &'static [i32],
}

impl ScaleCase {
    /// `name`: replicas `from -> to`, maxSurge `from -> to`, the ReplicaSets before (the new
    /// one's size and the old ones', newest first) and the sizes wanted after.
    fn new(
        name: &'static str,
        (from, to): (i32, i32),
        (surge_from, surge_to): (i32, i32),
        (new, olds): (Option<i32>, &'static [i32]),
        (want_new, want_olds): (Option<i32>, &'static [i32]),
    ) -> Self {
        Self {
            name,
            from,
            to,
            surge_from,
            surge_to,
            new,
            olds,
            want_new,
            want_olds,
        }
    }
}

fn rolling(replicas: i32, surge: i32) -> Deployment {
    let mut d = deployment(replicas);
    d.spec.strategy = Some(DeploymentStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(k8s_openapi::api::apps::v1::RollingUpdateDeployment {
            max_surge: Some(IntOrString::Int(surge)),
            max_unavailable: Some(IntOrString::Int(0)),
        }),
    });
    d
}

#[test]
fn scaling_during_a_rollout_is_proportional_like_the_real_controller() {
    // name, replicas from -> to, maxSurge from -> to, (new, olds) before, (new, olds) wanted
    #[rustfmt::skip]
    let cases = [
        ScaleCase::new("10 -> 12", (10, 12), (0, 0), (Some(10), &[]), (Some(12), &[])),
        ScaleCase::new("10 -> 5", (10, 5), (0, 0), (Some(10), &[]), (Some(5), &[])),
        ScaleCase::new("5 -> 10", (5, 10), (0, 0), (Some(2), &[3]), (Some(4), &[6])),
        ScaleCase::new("5 -> 3", (5, 3), (0, 0), (Some(2), &[3]), (Some(1), &[2])),
        ScaleCase::new("9 -> 4", (9, 4), (0, 0), (Some(8), &[1]), (Some(4), &[0])),
        ScaleCase::new("7 -> 10", (7, 10), (0, 0), (Some(2), &[3, 2]), (Some(3), &[4, 3])),
        ScaleCase::new("13 -> 8", (13, 8), (0, 0), (Some(2), &[8, 3]), (Some(1), &[5, 2])),
        ScaleCase::new("leftover 3 -> 4", (3, 4), (0, 0), (Some(1), &[1, 1]), (Some(2), &[1, 1])),
        ScaleCase::new("leftover 3 -> 2", (3, 2), (0, 0), (Some(1), &[1, 1]), (Some(1), &[1, 0])),
        ScaleCase::new("no new 4 -> 5", (4, 5), (0, 0), (None, &[2, 2]), (None, &[3, 2])),
        ScaleCase::new("6 -> 0", (6, 0), (0, 0), (Some(3), &[2, 1]), (Some(0), &[0, 0])),
        ScaleCase::new("0 -> 6", (6, 6), (0, 0), (Some(0), &[0, 0]), (Some(6), &[0, 0])),
        ScaleCase::new("surge 10 -> 20", (10, 20), (2, 2), (Some(6), &[6]), (Some(11), &[11])),
        ScaleCase::new("surge and size", (10, 50), (3, 6), (Some(5), &[8]), (Some(22), &[34])),
    ];
    for case in cases {
        let old_d = rolling(case.from, case.surge_from);
        let old_surge = Resolved::of(&old_d).max_surge().unwrap_or(0);
        let d = rolling(case.to, case.surge_to);
        let annotate = |mut rs: ReplicaSet, size: i32, age: i64| {
            rs.spec.replicas = Some(size);
            rs.status = Some(ReplicaSetStatus {
                replicas: size,
                available_replicas: Some(size),
                ..Default::default()
            });
            rs.metadata.creation_timestamp = Some(Time(t(-age)));
            let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
            a.insert(DESIRED_REPLICAS.into(), case.from.to_string());
            a.insert(MAX_REPLICAS.into(), (case.from + old_surge).to_string());
            rs
        };
        let mut rss = Vec::new();
        if let Some(size) = case.new {
            let mut rs = crate::sim::testing::replica_set("web-new", size);
            rs.spec.template = Some(d.spec.template.clone());
            rss.push(annotate(rs, size, 0));
        }
        for (i, size) in case.olds.iter().enumerate() {
            let mut rs = crate::sim::testing::replica_set(&format!("web-old{i}"), *size);
            let mut template = d.spec.template.clone();
            if let Some(spec) = template.spec.as_mut() {
                spec.containers[0].image = Some(format!("nginx:old{i}"));
            }
            rs.spec.template = Some(template);
            rss.push(annotate(rs, *size, 60 * (i as i64 + 1)));
        }
        let mut w = Work::new(&d, rss, t(0));
        let new = w.find_new();
        let olds: Vec<usize> = (0..w.rss.len()).filter(|i| Some(*i) != new).collect();
        assert!(w.scale(new, &olds).is_ok(), "{}", case.name);
        let size = |name: &str| {
            w.rss
                .iter()
                .find(|r| r.metadata.name.as_deref() == Some(name))
                .and_then(|r| r.spec.replicas)
        };
        assert_eq!(size("web-new"), case.want_new, "{}: new", case.name);
        let got: Vec<Option<i32>> = (0..case.olds.len())
            .map(|i| size(&format!("web-old{i}")))
            .collect();
        let want: Vec<Option<i32>> = case.want_olds.iter().map(|v| Some(*v)).collect();
        assert_eq!(got, want, "{}: olds", case.name);
    }
}

#[test]
fn a_finished_rollout_losing_pods_does_not_ask_for_deadline_checks() {
    let mut w = World::new(deployment(2));
    w.settle();
    // A pod goes unready long after the rollout finished.
    if let Some(s) = w.rss[0].status.as_mut() {
        s.ready_replicas = Some(1);
        s.available_replicas = Some(1);
    }
    w.now = t(100);
    let p = plan(&w.d, &w.rss, &[], w.now).unwrap_or_default();
    assert_eq!(p.requeue_at, None);
    let status = p.status.unwrap_or_default();
    assert_eq!(status.available_replicas, Some(1));
    assert_eq!(
        get_condition(&status, "Progressing")
            .and_then(|c| c.reason.clone())
            .as_deref(),
        Some(reason::NEW_REPLICA_SET_AVAILABLE)
    );
}
