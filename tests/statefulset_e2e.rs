//! End to end: a StatefulSet canary (a Serin extension) with the real `serin controller` binary
//! against the embedded cluster and its StatefulSet simulator, `kubernetes` provider, 1-second
//! intervals: initialisation, promotion and rollback, with the primary's own Pods and PVCs.
mod common;

use common::e2e::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use kube::ResourceExt;
use kube::api::ListParams;
use serde_json::{Value, json};
use serin::api::CanaryPhase;
use std::collections::BTreeMap;
use std::time::Duration;

/// The StatefulSet `db`: two replicas governed by `db-headless`, a `data` claim template.
fn db(image: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": NS, "labels": {"app": "db"}},
        "spec": {
            "replicas": 2,
            "serviceName": "db-headless",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}, "annotations": annotations},
                "spec": {"containers": [{
                    "name": "db", "image": image,
                    "ports": [{"name": "http", "containerPort": 9898}]
                }]}
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
            }]
        }
    })
}

fn headless() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "db-headless", "namespace": NS},
        "spec": {"clusterIP": "None", "selector": {"app": "db"},
                 "ports": [{"name": "http", "port": 9898, "targetPort": 9898}]}
    })
}

fn image(s: &StatefulSet) -> Option<String> {
    first_image(s.spec.template.spec.as_ref())
}

fn ready(s: &StatefulSet) -> i32 {
    s.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

/// Claim name → uid.
async fn claims(env: &Env) -> anyhow::Result<BTreeMap<String, String>> {
    Ok(env
        .api::<PersistentVolumeClaim>()
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|c| (c.name_any(), c.uid().unwrap_or_default()))
        .collect())
}

/// Checks every live Pod mounts only claims of its own StatefulSet and no claim is mounted by
/// Pods of both sets.
async fn no_claim_is_shared(env: &Env) -> anyhow::Result<()> {
    let pods = env.api::<Pod>().list(&ListParams::default()).await?.items;
    let mut users: BTreeMap<String, String> = BTreeMap::new();
    for p in pods {
        let name = p.name_any();
        let set = name
            .rsplit_once('-')
            .map(|(s, _)| s.to_string())
            .unwrap_or_default();
        for v in p.spec.and_then(|s| s.volumes).unwrap_or_default() {
            let Some(claim) = v.persistent_volume_claim.map(|c| c.claim_name) else {
                continue;
            };
            assert_eq!(
                claim
                    .strip_prefix("data-")
                    .and_then(|c| c.rsplit_once('-'))
                    .map(|(s, _)| s),
                Some(set.as_str()),
                "{name} mounts {claim}"
            );
            if let Some(other) = users.insert(claim.clone(), set.clone()) {
                assert_eq!(other, set, "{claim} is mounted by {other} and {set}");
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulset_canary_is_initialised_promoted_and_rolled_back_with_its_own_claims()
-> anyhow::Result<()> {
    let mut env = Env::start("statefulset").await?;
    env.apply(headless()).await?;
    env.apply(db("db:1", json!({}))).await?;
    env.start_controller()?;
    env.apply(canary("db", "StatefulSet", "db", json!({})))
        .await?;
    env.wait_phase("db", CanaryPhase::Initialized, 40).await?;

    // The primary: its own StatefulSet, headless Service, Pods and claims.
    let sets = env.api::<StatefulSet>();
    let primary = eventually(20, "two ready primary pods", || async {
        let p = sets.get("db-primary").await?;
        Ok((ready(&p) == 2).then_some(p))
    })
    .await?;
    assert_eq!(
        primary.spec.service_name.as_deref(),
        Some("db-headless-primary")
    );
    assert_eq!(image(&primary).as_deref(), Some("db:1"));
    let governing: Service = env.api().get("db-headless-primary").await?;
    let spec = governing.spec.unwrap_or_default();
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(
        spec.selector.and_then(|s| s.get("app").cloned()).as_deref(),
        Some("db-primary")
    );
    let target = eventually(20, "the target at zero", || async {
        let t = sets.get("db").await?;
        Ok((t.spec.replicas == Some(0)).then_some(t))
    })
    .await?;
    assert_eq!(target.spec.service_name.as_deref(), Some("db-headless"));
    let initial = claims(&env).await?;
    for name in [
        "data-db-0",
        "data-db-1",
        "data-db-primary-0",
        "data-db-primary-1",
    ] {
        assert!(initial.contains_key(name), "{name} missing: {initial:?}");
    }
    no_claim_is_shared(&env).await?;

    // A healthy revision is analysed and promoted; the primary serves all along.
    env.apply(db("db:2", json!({}))).await?;
    env.wait_phase("db", CanaryPhase::Progressing, 20).await?;
    for _ in 0..200 {
        let phase = env.canary("db").await?.status.and_then(|s| s.phase);
        if phase == Some(CanaryPhase::Succeeded) {
            break;
        }
        // While the canary runs the primary keeps serving; during promotion its ordered update
        // replaces one Pod at a time.
        let p = sets.get("db-primary").await?;
        let floor = if phase == Some(CanaryPhase::Progressing) {
            2
        } else {
            1
        };
        assert!(
            ready(&p) >= floor,
            "primary down to {} ready in {phase:?}",
            ready(&p)
        );
        no_claim_is_shared(&env).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    env.wait_phase("db", CanaryPhase::Succeeded, 40).await?;
    let primary = sets.get("db-primary").await?;
    assert_eq!(image(&primary).as_deref(), Some("db:2"));
    let st = primary.status.clone().unwrap_or_default();
    assert_eq!(st.current_revision, st.update_revision);
    assert_eq!(st.updated_replicas, Some(2));
    assert_eq!(sets.get("db").await?.spec.replicas, Some(0));
    let after_promotion = claims(&env).await?;
    for (name, uid) in &initial {
        assert_eq!(
            after_promotion.get(name),
            Some(uid),
            "{name} was replaced or deleted"
        );
    }

    // A faulty revision fails; the primary keeps two ready Pods on db:2 throughout.
    env.apply(db("db:3", json!({"sim.serin.dev/fault": "unready"})))
        .await?;
    for _ in 0..200 {
        let p = sets.get("db-primary").await?;
        assert_eq!(ready(&p), 2, "primary lost ready pods");
        assert_eq!(image(&p).as_deref(), Some("db:2"));
        no_claim_is_shared(&env).await?;
        let phase = env.canary("db").await?.status.and_then(|s| s.phase);
        if phase == Some(CanaryPhase::Failed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    env.wait_phase("db", CanaryPhase::Failed, 30).await?;
    eventually(20, "the failed canary at zero", || async {
        Ok((sets.get("db").await?.spec.replicas == Some(0)).then_some(()))
    })
    .await?;
    let after_rollback = claims(&env).await?;
    for (name, uid) in &initial {
        assert_eq!(
            after_rollback.get(name),
            Some(uid),
            "{name} was replaced or deleted"
        );
    }

    // revertOnDeletion: the target, reverted to the good revision, is scaled back up on its own
    // claims before the apex Service is handed back to it and the Canary goes.
    env.apply(db("db:2", json!({}))).await?;
    env.apply(canary(
        "db",
        "StatefulSet",
        "db",
        json!({"revertOnDeletion": true}),
    ))
    .await?;
    // The target is back on the primary's revision: no run starts, the Canary stays Failed.
    env.delete_finalized_canary("db", 30).await?;
    eventually(40, "the canary to be deleted", || env.canary_gone("db")).await?;
    let target = sets.get("db").await?;
    assert_eq!(target.spec.replicas, Some(2));
    assert_eq!(ready(&target), 2, "the target serves again");
    let apex: Service = env.api().get("db").await?;
    assert_eq!(selected_app(apex).as_deref(), Some("db"));
    let after_deletion = claims(&env).await?;
    for (name, uid) in &initial {
        assert_eq!(
            after_deletion.get(name),
            Some(uid),
            "{name} was replaced or deleted"
        );
    }
    Ok(())
}
