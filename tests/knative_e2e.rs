//! End to end: whole canary runs of a Knative Service on the embedded cluster, with the minimal
//! Knative CRD of `tests/fixtures/crds/knative.yaml` and 1-second intervals. Nothing simulates
//! Knative Serving there, so the test plays its controller: it names a revision per template,
//! makes it ready one beat later, and mirrors `spec.traffic` into `status.traffic`. The
//! primary-revision annotation and the traffic block are checked after every step.
//!
//! The controller runs in-process (`controller::run_with`) so that a test can inject a metrics
//! checker that fails at a chosen weight.
mod common;

use common::inprocess::{Env, FailAt, NS, eventually, passing, seen};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use serin::api::{Canary, CanaryPhase};
use serin::cluster::ClusterConfig;
use serin::cluster::sim::SimConfig;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KSVC: &str = "serving.knative.dev/v1";

impl Env {
    /// The default cluster with the Knative CRD, once Knative Services are served too.
    async fn start() -> anyhow::Result<Env> {
        let env = Env::start_with(
            ClusterConfig::default(),
            SimConfig::default(),
            &["knative.yaml"],
        )
        .await?;
        let ksvcs = env.ksvcs();
        eventually(10, "Knative Services to be served", || async {
            Ok(ksvcs.list(&Default::default()).await.is_ok().then_some(()))
        })
        .await?;
        Ok(env)
    }

    fn ksvcs(&self) -> Api<DynamicObject> {
        self.dynamic(KSVC, "Service")
    }

    /// Knative Serving's part: one revision `<svc>-0000N` per distinct template, ready one beat
    /// after it is created; `status.traffic` resolves `spec.traffic` (all to the latest ready
    /// revision without one); `observedGeneration` follows the spec.
    fn start_knative(&mut self) {
        let api = self.ksvcs();
        self.tasks.push(tokio::spawn(async move {
            // Templates seen per Service, in order: revision N is the N-th template.
            let mut revisions: HashMap<String, Vec<Value>> = HashMap::new();
            loop {
                if let Ok(list) = api.list(&ListParams::default()).await {
                    for s in list {
                        let v = serde_json::to_value(&s).unwrap_or_default();
                        let name = v["metadata"]["name"].as_str().unwrap_or_default().to_string();
                        let seen = revisions.entry(name.clone()).or_default();
                        let template = v["spec"]["template"].clone();
                        if seen.last() != Some(&template) {
                            seen.push(template);
                        }
                        let rev = |n: usize| format!("{name}-{n:05}");
                        let created = rev(seen.len());
                        let old_ready = v["status"]["latestReadyRevisionName"].clone();
                        // A new revision becomes ready on the next pass.
                        let ready = if v["status"]["latestCreatedRevisionName"] == json!(created) {
                            created.clone()
                        } else {
                            old_ready.as_str().map(str::to_string).unwrap_or_default()
                        };
                        let traffic: Vec<Value> = match v["spec"]["traffic"].as_array() {
                            Some(entries) => entries
                                .iter()
                                .map(|t| {
                                    let latest = t["latestRevision"].as_bool().unwrap_or(false);
                                    json!({
                                        "latestRevision": latest,
                                        "revisionName": if latest { json!(ready) } else { t["revisionName"].clone() },
                                        "percent": t["percent"],
                                    })
                                })
                                .collect(),
                            None => vec![json!({"latestRevision": true, "revisionName": ready, "percent": 100})],
                        };
                        let is_ready = ready == created;
                        let status = json!({
                            "observedGeneration": v["metadata"]["generation"],
                            "latestCreatedRevisionName": created,
                            "latestReadyRevisionName": if ready.is_empty() { Value::Null } else { json!(ready) },
                            "conditions": [{
                                "type": "Ready",
                                "status": if is_ready { "True" } else { "Unknown" },
                                "message": if is_ready { String::new() } else { format!("Revision {created} is starting") },
                            }],
                            "traffic": traffic,
                        });
                        if v["status"] != status {
                            let _ = api
                                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&json!({"status": status})))
                                .await;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }

    /// Records every distinct `[primary-revision annotation, spec.traffic]` of the Service.
    fn record_split(&mut self) -> Arc<Mutex<Vec<Value>>> {
        self.record(KSVC, "Service", "podinfo", |v| Some(split_of(v)))
    }

    async fn deploy(&self, version: &str) -> anyhow::Result<()> {
        self.apply(podinfo(version)).await
    }

    async fn ksvc(&self) -> anyhow::Result<Value> {
        self.get(KSVC, "Service", "podinfo").await
    }

    /// Waits until Knative (the stand-in) routes `traffic` (`status.traffic`).
    async fn routed(&self, traffic: Value) -> anyhow::Result<()> {
        let res = eventually(5, "Knative to route the split", || async {
            Ok((self.ksvc().await?["status"]["traffic"] == traffic).then_some(()))
        })
        .await;
        if res.is_err() {
            eprintln!("Knative Service: {:#}", self.ksvc().await?);
        }
        res
    }

    async fn apply_canary(&self, extra: Value) -> anyhow::Result<()> {
        self.apply(canary(extra)).await
    }
}

fn podinfo(version: &str) -> Value {
    json!({
        "apiVersion": KSVC, "kind": "Service",
        "metadata": {"name": "podinfo", "namespace": NS},
        "spec": {"template": {"spec": {"containers": [{
            "image": format!("ghcr.io/stefanprodan/podinfo:{version}"),
            "ports": [{"containerPort": 9898}]
        }]}}}
    })
}

/// The podinfo Canary of a Knative Service (no `service`), with `extra` replacing fields of its
/// spec.
fn canary(extra: Value) -> Value {
    Canary::test()
        .namespace(NS)
        .provider("knative")
        .target(KSVC, "Service", "podinfo")
        .spec(json!({"progressDeadlineSeconds": 60, "service": null,
            "analysis": {"interval": "1s", "threshold": 1, "stepWeight": 20, "maxWeight": 60}}))
        .replace(extra)
        .json()
}

/// `[primary-revision annotation, spec.traffic]` of a Knative Service.
fn split_of(v: &Value) -> Value {
    json!([
        v["metadata"]["annotations"]["flagger.app/primary-revision"],
        v["spec"]["traffic"]
    ])
}

/// The split Serin writes: `canary` % to the latest revision, the rest to `primary` by name.
fn split(primary: &str, canary: i32) -> Value {
    json!([primary, [
        {"latestRevision": true, "percent": canary},
        {"revisionName": primary, "percent": 100 - canary},
    ]])
}

/// The recorded steps once the recorder (polling every 40 ms) has seen the `last` one.
async fn steps_until(r: &Arc<Mutex<Vec<Value>>>, last: Value) -> anyhow::Result<Vec<Value>> {
    let found = eventually(5, "the final split to be recorded", || async {
        Ok((seen(r).last() == Some(&last)).then_some(()))
    })
    .await;
    if found.is_err() {
        eprintln!("recorded: {:#}", json!(seen(r)));
    }
    found.map(|()| seen(r))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knative_shifts_traffic_to_the_latest_revision_and_promotes_it_by_annotation()
-> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.start_knative();
    env.start_controller("istio", passing(), Default::default());
    env.deploy("1.0").await?;
    env.apply_canary(json!({"revertOnDeletion": true})).await?;
    env.wait_phase(CanaryPhase::Initialized, 30).await?;
    // Initialisation names the current revision primary and pins all traffic on it.
    assert_eq!(split_of(&env.ksvc().await?), split("podinfo-00001", 0));

    let steps = env.record_split();
    env.deploy("2.0").await?;
    env.wait_phase(CanaryPhase::Progressing, 20).await?;
    env.wait_phase(CanaryPhase::Succeeded, 60).await?;
    let recorded = steps_until(&steps, split("podinfo-00002", 0)).await?;
    // Promotion names the new revision primary, then routes everything to it. The watch on the
    // Service wakes the controller at once for the second write, so a 40 ms poll may or may
    // not fall between the two; the order is what matters.
    let named = json!(["podinfo-00002", split("podinfo-00001", 60)[1]]);
    let mut want = vec![
        split("podinfo-00001", 0),
        split("podinfo-00001", 20),
        split("podinfo-00001", 40),
        split("podinfo-00001", 60),
        named.clone(),
        split("podinfo-00002", 0),
    ];
    if !recorded.contains(&named) {
        want.retain(|s| *s != named);
    }
    assert_eq!(recorded, want);
    env.routed(json!([
        {"latestRevision": true, "revisionName": "podinfo-00002", "percent": 0},
        {"latestRevision": false, "revisionName": "podinfo-00002", "percent": 100},
    ]))
    .await?;

    // revertOnDeletion hands the Service back to Knative: no annotation, no traffic block.
    let canaries: Api<Canary> = Api::namespaced(env.client.clone(), NS);
    canaries.delete("podinfo", &DeleteParams::default()).await?;
    eventually(20, "the canary to be gone", || async {
        Ok(canaries.get_opt("podinfo").await?.is_none().then_some(()))
    })
    .await?;
    assert_eq!(split_of(&env.ksvc().await?), json!([null, null]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knative_rolls_back_to_the_primary_revision_at_the_failing_step() -> anyhow::Result<()> {
    let mut env = Env::start().await?;
    env.start_knative();
    env.start_controller("istio", Arc::new(FailAt(40)), Default::default());
    env.deploy("1.0").await?;
    env.apply_canary(json!({})).await?;
    env.wait_phase(CanaryPhase::Initialized, 30).await?;

    let steps = env.record_split();
    env.deploy("2.0").await?;
    env.wait_phase(CanaryPhase::Progressing, 20).await?;
    let failed = env.wait_phase(CanaryPhase::Failed, 60).await?;
    assert_eq!(failed.status.map(|s| s.canary_weight), Some(0));
    assert_eq!(
        steps_until(&steps, split("podinfo-00001", 0)).await?,
        vec![
            split("podinfo-00001", 0),
            split("podinfo-00001", 20),
            split("podinfo-00001", 40),
            split("podinfo-00001", 0),
        ]
    );
    // The failed revision stays the latest; the primary keeps serving everything.
    env.routed(json!([
        {"latestRevision": true, "revisionName": "podinfo-00002", "percent": 0},
        {"latestRevision": false, "revisionName": "podinfo-00001", "percent": 100},
    ]))
    .await?;
    Ok(())
}
