//! End-to-end tests of the simulated StatefulSet controller against the embedded API server over
//! HTTP: ordered Pods, PVCs, ControllerRevisions and the statuses a 1.24 controller reports.
use anyhow::bail;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use serin::cluster::sim::SimConfig;
use std::collections::BTreeMap;
use std::time::Duration;

#[path = "support/sim.rs"]
mod simenv;
use simenv::{Env, eventually};

async fn env() -> anyhow::Result<Env> {
    let config = SimConfig {
        pod_ready_delay: Duration::from_millis(150),
        ..SimConfig::default()
    };
    simenv::start(config, 2).await
}

/// The StatefulSet `db` with a `data` claim template, as a user would write it.
fn db(replicas: i32, image: &str, fault: Option<&str>) -> StatefulSet {
    let annotations = fault.map(|f| json!({"sim.serin.dev/fault": f}));
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "serviceName": "db-headless",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}, "annotations": annotations},
                "spec": {"containers": [{"name": "db", "image": image}]}
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
            }]
        }
    }))
    .unwrap_or_default()
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Pods of `db` by name.
async fn pods(client: &Client) -> anyhow::Result<BTreeMap<String, Pod>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    Ok(api
        .list(&ListParams::default().labels("app=db"))
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| (p.name_any(), p))
        .collect())
}

/// Claim name → uid.
async fn claims(client: &Client) -> anyhow::Result<BTreeMap<String, String>> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|c| (c.name_any(), c.uid().unwrap_or_default()))
        .collect())
}

/// Waits for a status with every Pod on one revision and `n` of them ready.
async fn settled(api: &Api<StatefulSet>, n: i32, generation: i64) -> anyhow::Result<StatefulSet> {
    eventually(30, "a settled StatefulSet", || async {
        let s = api.get("db").await?;
        let st = s.status.clone().unwrap_or_default();
        let done = st.observed_generation == Some(generation)
            && st.replicas == n
            && st.ready_replicas.unwrap_or(0) == n
            && st.current_revision == st.update_revision;
        Ok(done.then_some(s))
    })
    .await
}

#[tokio::test]
async fn a_statefulset_creates_ordered_pods_with_their_claims_and_rolls_updates_down()
-> anyhow::Result<()> {
    let env = env().await?;
    let api: Api<StatefulSet> = Api::namespaced(env.client.clone(), "default");
    api.create(&PostParams::default(), &db(3, "db:1", None))
        .await?;

    // OrderedReady: a Pod exists only once every lower ordinal is Ready.
    let created = eventually(30, "three ready pods", || async {
        let pods = pods(&env.client).await?;
        for o in 1..3 {
            if pods.contains_key(&format!("db-{o}")) {
                let below = pods.get(&format!("db-{}", o - 1));
                if !below.is_some_and(ready) {
                    bail!("db-{o} was created before db-{} was ready", o - 1);
                }
            }
        }
        Ok((pods.len() == 3 && pods.values().all(ready)).then_some(pods))
    })
    .await?;
    let s = settled(&api, 3, 1).await?;
    let st = s.status.clone().unwrap_or_default();
    let revision = st.update_revision.clone().unwrap_or_default();
    assert!(revision.starts_with("db-"), "revision {revision}");
    // What a 1.24 controller reports for a settled three-replica set.
    assert_eq!(
        st,
        StatefulSetStatus {
            observed_generation: Some(1),
            replicas: 3,
            ready_replicas: Some(3),
            current_replicas: Some(3),
            updated_replicas: Some(3),
            available_replicas: Some(3),
            current_revision: Some(revision.clone()),
            update_revision: Some(revision.clone()),
            collision_count: Some(0),
            conditions: None,
        }
    );
    for (name, pod) in &created {
        let labels = pod.labels();
        assert_eq!(labels.get("controller-revision-hash"), Some(&revision));
        assert_eq!(labels.get("statefulset.kubernetes.io/pod-name"), Some(name));
        let spec = pod.spec.clone().unwrap_or_default();
        assert_eq!(spec.hostname.as_deref(), Some(name.as_str()));
        assert_eq!(spec.subdomain.as_deref(), Some("db-headless"));
        let claim = spec
            .volumes
            .unwrap_or_default()
            .into_iter()
            .find_map(|v| v.persistent_volume_claim)
            .map(|c| c.claim_name);
        assert_eq!(claim, Some(format!("data-{name}")));
    }
    let first_claims = claims(&env.client).await?;
    assert_eq!(
        first_claims.keys().cloned().collect::<Vec<_>>(),
        vec!["data-db-0", "data-db-1", "data-db-2"]
    );
    let revs: Api<ControllerRevision> = Api::namespaced(env.client.clone(), "default");
    let list = revs.list(&ListParams::default()).await?.items;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name_any(), revision);
    assert_eq!(list[0].revision, Some(1));

    // A new template rolls from the highest ordinal down; the claims stay the same objects.
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "db", "image": "db:2"}]}}}});
    api.patch("db", &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    let s = settled(&api, 3, 2).await?;
    let st = s.status.clone().unwrap_or_default();
    let second = st.update_revision.clone().unwrap_or_default();
    assert_ne!(second, revision);
    assert_eq!(st.updated_replicas, Some(3));
    assert_eq!(st.current_replicas, Some(3));
    let pods_now = pods(&env.client).await?;
    assert!(
        pods_now
            .values()
            .all(|p| p.labels().get("controller-revision-hash") == Some(&second))
    );
    assert_eq!(claims(&env.client).await?, first_claims);
    let numbers: Vec<Option<i64>> = {
        let mut l = revs.list(&ListParams::default()).await?.items;
        l.sort_by_key(|r| r.revision);
        l.iter().map(|r| r.revision).collect()
    };
    assert_eq!(numbers, vec![Some(1), Some(2)]);

    // Scaling down removes the highest ordinals and keeps their claims (Retain).
    api.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 1}})),
    )
    .await?;
    settled(&api, 1, 3).await?;
    assert_eq!(
        pods(&env.client).await?.keys().cloned().collect::<Vec<_>>(),
        vec!["db-0"]
    );
    assert_eq!(claims(&env.client).await?, first_claims);

    // Only replicas, template, updateStrategy, minReadySeconds and the retention policy change.
    let bad = json!({"spec": {"serviceName": "other"}});
    let err = api
        .patch("db", &PatchParams::default(), &Patch::Merge(&bad))
        .await;
    assert!(
        matches!(&err, Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains("updates to statefulset spec")),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_partition_and_a_faulty_revision_hold_the_rollout() -> anyhow::Result<()> {
    let env = env().await?;
    let api: Api<StatefulSet> = Api::namespaced(env.client.clone(), "default");
    api.create(&PostParams::default(), &db(3, "db:1", None))
        .await?;
    let s = settled(&api, 3, 1).await?;
    let first = s
        .status
        .and_then(|st| st.current_revision)
        .unwrap_or_default();

    // partition: 2 updates db-2 only; the current revision stays.
    let patch = json!({"spec": {
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
        "template": {"spec": {"containers": [{"name": "db", "image": "db:2"}]}}}});
    api.patch("db", &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    let st = eventually(30, "db-2 updated", || async {
        let st = api.get("db").await?.status.unwrap_or_default();
        let done = st.observed_generation == Some(2)
            && st.updated_replicas == Some(1)
            && st.ready_replicas == Some(3);
        Ok(done.then_some(st))
    })
    .await?;
    assert_eq!(st.current_revision.as_deref(), Some(first.as_str()));
    assert_ne!(st.update_revision, st.current_revision);
    assert_eq!(st.current_replicas, Some(2));
    let pods_now = pods(&env.client).await?;
    let rev = |n: &str| {
        pods_now
            .get(n)
            .and_then(|p| p.labels().get("controller-revision-hash").cloned())
    };
    assert_eq!(rev("db-0").as_deref(), Some(first.as_str()));
    assert_eq!(rev("db-1").as_deref(), Some(first.as_str()));
    assert_eq!(rev("db-2"), st.update_revision);

    // Without the partition, a template whose Pods never get ready stops at the highest ordinal.
    let patch = json!({"spec": {
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
        "template": {"metadata": {"annotations": {"sim.serin.dev/fault": "unready"}},
                     "spec": {"containers": [{"name": "db", "image": "db:3"}]}}}});
    api.patch("db", &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    let st = eventually(30, "db-2 on the faulty revision", || async {
        let st = api.get("db").await?.status.unwrap_or_default();
        let pods = pods(&env.client).await?;
        let on_new = pods.get("db-2").is_some_and(|p| {
            p.labels().get("controller-revision-hash") == st.update_revision.as_ref()
        });
        Ok((st.observed_generation == Some(3) && on_new).then_some(st))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = api.get("db").await?.status.unwrap_or_default();
    assert_eq!(held.update_revision, st.update_revision);
    assert_eq!(held.updated_replicas, Some(1), "the rollout waits at db-2");
    assert_eq!(held.ready_replicas, Some(2));
    assert_eq!(held.current_revision.as_deref(), Some(first.as_str()));
    let pods_now = pods(&env.client).await?;
    assert_eq!(
        pods_now
            .get("db-0")
            .and_then(|p| p.labels().get("controller-revision-hash").cloned())
            .as_deref(),
        Some(first.as_str())
    );
    Ok(())
}
