//! End-to-end tests of the simulated workload controllers against the embedded API server over
//! HTTP: the statuses a real kube-controller-manager would report for the same sequences.
use anyhow::Context;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, DeploymentCondition, ReplicaSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Endpoints, Event, Node, Pod, Service};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use serin::cluster::sim::{self, SimConfig};
use std::time::Duration;

#[path = "support/sim.rs"]
mod simenv;
use simenv::{Env, eventually};

async fn env(nodes: usize) -> anyhow::Result<Env> {
    let config = SimConfig {
        pod_ready_delay: Duration::from_millis(200),
        crashloop_interval: Duration::from_millis(300),
        hpa_sync_period: Duration::from_millis(200),
        ..SimConfig::default()
    };
    simenv::start(config, nodes).await
}

fn from_json<T: DeserializeOwned>(v: serde_json::Value) -> anyhow::Result<T> {
    Ok(serde_json::from_value(v)?)
}

fn web(replicas: i32, deadline: i32) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "annotations": {"team": "a"}},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": deadline,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}, "annotations": {"note": "kept"}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1", "ports": [{"name": "http", "containerPort": 8080}]}]}
            }
        }
    })
}

fn condition(d: &Deployment, type_: &str) -> Option<DeploymentCondition> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_.as_deref() == Some(type_))
        .cloned()
}

fn reason(d: &Deployment, type_: &str) -> Option<String> {
    condition(d, type_)?.reason
}

/// Waits until the Deployment reports `reason` on Progressing for generation `generation`.
async fn progressing(
    api: &Api<Deployment>,
    generation: i64,
    want: &str,
    secs: u64,
) -> anyhow::Result<Deployment> {
    eventually(secs, &format!("Progressing={want}"), || async {
        let d = api.get("web").await?;
        let observed = d.status.as_ref().and_then(|s| s.observed_generation);
        Ok(
            (observed == Some(generation) && reason(&d, "Progressing").as_deref() == Some(want))
                .then_some(d),
        )
    })
    .await
}

async fn owned_replica_sets(client: &Client) -> anyhow::Result<Vec<ReplicaSet>> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    Ok(api.list(&ListParams::default()).await?.items)
}

fn new_rs_name(d: &Deployment, rss: &[ReplicaSet]) -> Option<String> {
    let revision = d.annotations().get("deployment.kubernetes.io/revision")?;
    rss.iter()
        .find(|rs| rs.annotations().get("deployment.kubernetes.io/revision") == Some(revision))
        .map(|rs| rs.name_any())
}

fn counts(d: &Deployment) -> [Option<i32>; 5] {
    let s = d.status.clone().unwrap_or_default();
    [
        s.replicas,
        s.updated_replicas,
        s.ready_replicas,
        s.available_replicas,
        s.unavailable_replicas,
    ]
}

#[tokio::test]
async fn a_new_deployment_converges_to_the_status_the_real_controller_reports() -> anyhow::Result<()>
{
    let env = env(3).await?;
    let api: Api<Deployment> = Api::namespaced(env.client.clone(), "default");
    api.create(&PostParams::default(), &from_json(web(3, 600))?)
        .await?;
    let d = progressing(&api, 1, "NewReplicaSetAvailable", 10).await?;

    let rss = owned_replica_sets(&env.client).await?;
    assert_eq!(rss.len(), 1);
    let rs = &rss[0];
    let hash = rs
        .labels()
        .get("pod-template-hash")
        .cloned()
        .context("hash label")?;
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    assert_eq!(
        rs.spec
            .selector
            .match_labels
            .as_ref()
            .and_then(|m| m.get("pod-template-hash")),
        Some(&hash)
    );
    for (k, v) in [
        ("deployment.kubernetes.io/revision", "1"),
        ("deployment.kubernetes.io/desired-replicas", "3"),
        ("deployment.kubernetes.io/max-replicas", "4"),
        ("team", "a"),
    ] {
        assert_eq!(rs.annotations().get(k).map(String::as_str), Some(v), "{k}");
    }
    let owner = rs.owner_references().first().cloned().context("owner")?;
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.controller,
            owner.block_owner_deletion
        ),
        ("Deployment", Some(true), Some(true))
    );

    assert_eq!(
        d.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("1")
    );
    let status = d.status.clone().unwrap_or_default();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(counts(&d), [Some(3), Some(3), Some(3), Some(3), None]);
    assert_eq!(status.terminating_replicas, Some(0));
    let conditions: Vec<(String, String, String, String)> = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            (
                c.type_.unwrap_or_default(),
                c.status.unwrap_or_default(),
                c.reason.unwrap_or_default(),
                c.message.unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        conditions,
        vec![
            (
                "Available".into(),
                "True".into(),
                "MinimumReplicasAvailable".into(),
                "Deployment has minimum availability.".into()
            ),
            (
                "Progressing".into(),
                "True".into(),
                "NewReplicaSetAvailable".into(),
                format!("ReplicaSet \"web-{hash}\" has successfully progressed.")
            ),
        ]
    );

    let events: Api<Event> = Api::namespaced(env.client.clone(), "default");
    let events: Vec<(String, String, String)> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|e| {
            (
                e.involved_object.kind.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
            )
        })
        .collect();
    let scaled = (
        "Deployment".to_string(),
        "ScalingReplicaSet".to_string(),
        format!("Scaled up replica set web-{hash} from 0 to 3"),
    );
    assert!(events.contains(&scaled), "{events:?}");
    let created = events
        .iter()
        .filter(|(k, r, _)| k == "ReplicaSet" && r == "SuccessfulCreate")
        .count();
    assert_eq!(created, 3, "{events:?}");

    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let list = pods
        .list(&ListParams::default().labels("app=web"))
        .await?
        .items;
    assert_eq!(list.len(), 3);
    for p in &list {
        let suffix = p
            .name_any()
            .strip_prefix(&format!("web-{hash}-"))
            .map(str::len);
        assert_eq!(suffix, Some(5), "pod name {}", p.name_any());
        assert_eq!(p.labels().get("pod-template-hash"), Some(&hash));
        assert_eq!(
            p.annotations().get("note").map(String::as_str),
            Some("kept")
        );
        assert_eq!(
            p.owner_references().first().map(|o| o.kind.as_str()),
            Some("ReplicaSet")
        );
        let status = p.status.clone().unwrap_or_default();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert!(status.pod_ip.is_some() && status.host_ip.is_some());
        assert!(
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| n.starts_with("sim-node-"))
        );
    }
    Ok(())
}

#[tokio::test]
async fn scaling_up_down_and_to_zero_follows_the_spec() -> anyhow::Result<()> {
    let env = env(2).await?;
    let api: Api<Deployment> = Api::namespaced(env.client.clone(), "default");
    api.create(&PostParams::default(), &from_json(web(2, 600))?)
        .await?;
    progressing(&api, 1, "NewReplicaSetAvailable", 10).await?;
    for (generation, replicas) in [(2, 5), (3, 1)] {
        api.patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await?;
        let d = eventually(10, "scaled", || async {
            let d = api.get("web").await?;
            let done = d.status.as_ref().and_then(|s| s.observed_generation) == Some(generation)
                && counts(&d)
                    == [
                        Some(replicas),
                        Some(replicas),
                        Some(replicas),
                        Some(replicas),
                        None,
                    ];
            Ok(done.then_some(d))
        })
        .await?;
        assert_eq!(
            reason(&d, "Available").as_deref(),
            Some("MinimumReplicasAvailable")
        );
        assert_eq!(
            reason(&d, "Progressing").as_deref(),
            Some("NewReplicaSetAvailable")
        );
        let rss = owned_replica_sets(&env.client).await?;
        assert_eq!(
            rss[0]
                .annotations()
                .get("deployment.kubernetes.io/desired-replicas"),
            Some(&replicas.to_string())
        );
    }
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 0}})),
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    eventually(10, "no pods", || async {
        Ok(pods
            .list(&ListParams::default())
            .await?
            .items
            .is_empty()
            .then_some(()))
    })
    .await?;
    let d = eventually(10, "zero status", || async {
        let d = api.get("web").await?;
        Ok((counts(&d) == [None; 5]
            && d.status.as_ref().and_then(|s| s.observed_generation) == Some(4))
        .then_some(d))
    })
    .await?;
    assert_eq!(
        reason(&d, "Available").as_deref(),
        Some("MinimumReplicasAvailable")
    );
    Ok(())
}

#[tokio::test]
async fn an_image_change_rolls_out_a_new_replica_set_as_revision_two() -> anyhow::Result<()> {
    let env = env(2).await?;
    let api: Api<Deployment> = Api::namespaced(env.client.clone(), "default");
    api.create(&PostParams::default(), &from_json(web(3, 600))?)
        .await?;
    let first = progressing(&api, 1, "NewReplicaSetAvailable", 10).await?;
    let old = new_rs_name(&first, &owned_replica_sets(&env.client).await?).context("first rs")?;
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}}}});
    api.patch("web", &PatchParams::default(), &Patch::Strategic(patch))
        .await?;
    let d = eventually(15, "rollout", || async {
        let d = api.get("web").await?;
        let rev2 = d
            .annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str)
            == Some("2");
        let done = rev2
            && d.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
            && reason(&d, "Progressing").as_deref() == Some("NewReplicaSetAvailable")
            && counts(&d) == [Some(3), Some(3), Some(3), Some(3), None];
        Ok(done.then_some(d))
    })
    .await?;
    let rss = owned_replica_sets(&env.client).await?;
    assert_eq!(rss.len(), 2);
    let new = new_rs_name(&d, &rss).context("new rs")?;
    assert_ne!(new, old);
    let old_rs = rss.iter().find(|r| r.name_any() == old).context("old rs")?;
    assert_eq!(old_rs.spec.replicas, Some(0));
    assert_eq!(
        old_rs
            .annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(
        condition(&d, "Progressing").and_then(|c| c.message),
        Some(format!("ReplicaSet \"{new}\" has successfully progressed."))
    );
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    eventually(10, "old pods gone", || async {
        let list = pods.list(&ListParams::default()).await?.items;
        Ok((list.len() == 3 && list.iter().all(|p| p.name_any().starts_with(&new))).then_some(()))
    })
    .await?;

    // Owner references let the garbage collector remove ReplicaSets and Pods with the Deployment.
    api.delete("web", &Default::default()).await?;
    let rs_api: Api<ReplicaSet> = Api::namespaced(env.client.clone(), "default");
    eventually(10, "garbage collected", || async {
        let rss = rs_api.list(&ListParams::default()).await?.items;
        let pods = pods.list(&ListParams::default()).await?.items;
        Ok((rss.is_empty() && pods.is_empty()).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_crashlooping_template_exceeds_the_progress_deadline() -> anyhow::Result<()> {
    let env = env(2).await?;
    let api: Api<Deployment> = Api::namespaced(env.client.clone(), "default");
    api.create(&PostParams::default(), &from_json(web(2, 2))?)
        .await?;
    progressing(&api, 1, "NewReplicaSetAvailable", 10).await?;
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {"sim.serin.dev/fault": "crashloop"}}}}});
    api.patch("web", &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    let d = progressing(&api, 2, "ProgressDeadlineExceeded", 15).await?;
    let new = new_rs_name(&d, &owned_replica_sets(&env.client).await?).context("new rs")?;
    let cond = condition(&d, "Progressing").context("Progressing")?;
    assert_eq!(cond.status.as_deref(), Some("False"));
    assert_eq!(
        cond.message,
        Some(format!("ReplicaSet \"{new}\" has timed out progressing."))
    );
    // 25% of 2 rounds maxUnavailable down to 0: both old pods stay, one new pod surges.
    assert_eq!(
        reason(&d, "Available").as_deref(),
        Some("MinimumReplicasAvailable")
    );
    assert_eq!(counts(&d), [Some(3), Some(1), Some(2), Some(2), Some(1)]);
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let crashing = pods
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .find(|p| p.name_any().starts_with(&new));
    let cs = crashing
        .and_then(|p| p.status?.container_statuses?.into_iter().next())
        .context("container status")?;
    assert!(!cs.ready);
    assert!(cs.restart_count >= 1);
    assert_eq!(
        cs.state
            .and_then(|s| s.waiting)
            .and_then(|w| w.reason)
            .as_deref(),
        Some("CrashLoopBackOff")
    );
    Ok(())
}

#[tokio::test]
async fn daemon_sets_run_one_pod_per_matching_node() -> anyhow::Result<()> {
    let env = env(3).await?;
    let nodes: Api<Node> = Api::all(env.client.clone());
    let names: Vec<String> = nodes
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    assert_eq!(names, vec!["sim-node-0", "sim-node-1", "sim-node-2"]);
    let api: Api<DaemonSet> = Api::namespaced(env.client.clone(), "default");
    let ds = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "a", "image": "agent:1"}]}}
        }
    });
    api.create(&PostParams::default(), &from_json(ds)?).await?;
    let status = eventually(10, "daemon set ready", || async {
        let s = api.get("agent").await?.status.unwrap_or_default();
        Ok((s.number_ready == 3 && s.number_available == Some(3)).then_some(s))
    })
    .await?;
    assert_eq!(
        (
            status.desired_number_scheduled,
            status.current_number_scheduled,
            status.number_misscheduled
        ),
        (3, 3, 0)
    );
    assert_eq!(
        (status.updated_number_scheduled, status.number_unavailable),
        (Some(3), None)
    );
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let mut on: Vec<String> = pods
        .list(&ListParams::default().labels("app=agent"))
        .await?
        .items
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    on.sort();
    assert_eq!(on, names);

    // A template change rolls through the nodes, one unavailable pod at a time.
    let before: Vec<String> = pods
        .list(&ListParams::default().labels("app=agent"))
        .await?
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "agent:2"}]}}}});
    api.patch("agent", &PatchParams::default(), &Patch::Strategic(patch))
        .await?;
    eventually(15, "daemon set updated", || async {
        let s = api.get("agent").await?.status.unwrap_or_default();
        let list = pods
            .list(&ListParams::default().labels("app=agent"))
            .await?
            .items;
        let replaced = list.len() == 3 && list.iter().all(|p| !before.contains(&p.name_any()));
        let done = replaced
            && s.observed_generation == Some(2)
            && s.updated_number_scheduled == Some(3)
            && s.number_available == Some(3);
        Ok(done.then_some(()))
    })
    .await?;

    // Flagger's scale-to-zero: a selector no node carries.
    let patch = json!({"spec": {"template": {"spec": {"nodeSelector": {"flagger.app/scale-to-zero": "true"}}}}});
    api.patch("agent", &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    let status = eventually(10, "scaled to zero", || async {
        let s = api.get("agent").await?.status.unwrap_or_default();
        let gone = pods
            .list(&ListParams::default().labels("app=agent"))
            .await?
            .items
            .is_empty();
        let settled = s.desired_number_scheduled == 0
            && s.current_number_scheduled == 0
            && s.number_misscheduled == 0;
        Ok((gone && settled).then_some(s))
    })
    .await?;
    assert_eq!(
        (
            status.number_ready,
            status.number_available,
            status.observed_generation
        ),
        (0, None, Some(3))
    );
    Ok(())
}

#[tokio::test]
async fn hpas_keep_targets_within_bounds_and_leave_zero_alone() -> anyhow::Result<()> {
    let env = env(2).await?;
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), "default");
    deployments
        .create(&PostParams::default(), &from_json(web(1, 600))?)
        .await?;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(env.client.clone(), "default");
    let hpa = json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 2, "maxReplicas": 4}
    });
    hpas.create(&PostParams::default(), &from_json(hpa)?)
        .await?;
    let replicas = |want: i32| {
        let deployments = deployments.clone();
        async move {
            eventually(10, &format!("{want} replicas"), || async {
                Ok((deployments.get("web").await?.spec.replicas == Some(want)).then_some(()))
            })
            .await
        }
    };
    replicas(2).await?;
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 9}})),
        )
        .await?;
    replicas(4).await?;
    let status = eventually(10, "hpa status", || async {
        let s = hpas.get("web").await?.status.unwrap_or_default();
        Ok((s.current_replicas == Some(4) && s.desired_replicas == 4).then_some(s))
    })
    .await?;
    let conditions: Vec<(String, String)> = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.type_, c.reason.unwrap_or_default()))
        .collect();
    assert!(
        conditions.contains(&("AbleToScale".into(), "ReadyForNewScale".into())),
        "{conditions:?}"
    );
    assert!(
        conditions.contains(&("ScalingActive".into(), "ValidMetricFound".into())),
        "{conditions:?}"
    );

    let missing = json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "missing", "namespace": "default"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "missing"}, "maxReplicas": 3}
    });
    hpas.create(&PostParams::default(), &from_json(missing)?)
        .await?;
    eventually(10, "FailedGetScale", || async {
        let s = hpas.get("missing").await?.status.unwrap_or_default();
        let failed = s.conditions.iter().flatten().any(|c| {
            c.type_ == "AbleToScale"
                && c.status == "False"
                && c.reason.as_deref() == Some("FailedGetScale")
        });
        Ok(failed.then_some(()))
    })
    .await?;

    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await?;
    let status = eventually(10, "scaling disabled", || async {
        let s = hpas.get("web").await?.status.unwrap_or_default();
        let disabled =
            s.conditions.iter().flatten().any(|c| {
                c.type_ == "ScalingActive" && c.reason.as_deref() == Some("ScalingDisabled")
            });
        Ok(disabled.then_some(s))
    })
    .await?;
    assert_eq!(status.desired_replicas, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        deployments.get("web").await?.spec.replicas,
        Some(0),
        "a target at zero is not scaled up"
    );
    Ok(())
}

#[tokio::test]
async fn endpoints_follow_services_and_pod_readiness() -> anyhow::Result<()> {
    let env = env(2).await?;
    let services: Api<Service> = Api::namespaced(env.client.clone(), "default");
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "labels": {"tier": "front"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    });
    services
        .create(&PostParams::default(), &from_json(svc)?)
        .await?;
    let mut d = web(2, 600);
    d["spec"]["template"]["metadata"]["annotations"] =
        json!({"sim.serin.dev/fault": "slow-start", "sim.serin.dev/slow-start-seconds": "2"});
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), "default");
    deployments
        .create(&PostParams::default(), &from_json(d)?)
        .await?;
    let endpoints: Api<Endpoints> = Api::namespaced(env.client.clone(), "default");
    let addresses = |ep: &Endpoints| -> (usize, usize) {
        let subsets = ep.subsets.clone().unwrap_or_default();
        (
            subsets
                .iter()
                .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
                .sum(),
            subsets
                .iter()
                .map(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len))
                .sum(),
        )
    };
    let unready = eventually(10, "unready endpoints", || async {
        let ep = endpoints.get_opt("web").await?;
        Ok(ep.filter(|ep| addresses(ep) == (0, 2)))
    })
    .await?;
    assert_eq!(
        unready.labels().get("tier").map(String::as_str),
        Some("front")
    );
    let subset = unready
        .subsets
        .unwrap_or_default()
        .into_iter()
        .next()
        .context("subset")?;
    let port = subset
        .ports
        .unwrap_or_default()
        .into_iter()
        .next()
        .context("port")?;
    assert_eq!(
        (port.name.as_deref(), port.port, port.protocol.as_deref()),
        (Some("http"), 8080, Some("TCP"))
    );
    let target = subset
        .not_ready_addresses
        .unwrap_or_default()
        .into_iter()
        .next()
        .and_then(|a| a.target_ref)
        .context("targetRef")?;
    assert_eq!(target.kind.as_deref(), Some("Pod"));
    eventually(10, "ready endpoints", || async {
        Ok(endpoints
            .get_opt("web")
            .await?
            .filter(|ep| addresses(ep) == (2, 0))
            .map(|_| ()))
    })
    .await?;
    services.delete("web", &Default::default()).await?;
    eventually(10, "endpoints removed", || async {
        Ok(endpoints.get_opt("web").await?.is_none().then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_name_taken_by_a_foreign_replica_set_counts_a_hash_collision() -> anyhow::Result<()> {
    let env = env(1).await?;
    // Paused, the Deployment gets stored (with the server's defaults) but no ReplicaSet yet.
    let mut paused = web(1, 600);
    paused["spec"]["paused"] = json!(true);
    let api: Api<Deployment> = Api::namespaced(env.client.clone(), "default");
    let stored = api
        .create(&PostParams::default(), &from_json(paused)?)
        .await?;
    let hash = sim::util::template_hash(&stored.spec.template, None);
    let foreign = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": format!("web-{hash}"), "namespace": "default"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "other"}},
            "template": {"metadata": {"labels": {"app": "other"}}, "spec": {"containers": [{"name": "x", "image": "x"}]}}
        }
    });
    let rs_api: Api<ReplicaSet> = Api::namespaced(env.client.clone(), "default");
    rs_api
        .create(&PostParams::default(), &from_json(foreign)?)
        .await?;
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"paused": false}})),
    )
    .await?;
    let d = progressing(&api, 2, "NewReplicaSetAvailable", 10).await?;
    assert_eq!(d.status.as_ref().and_then(|s| s.collision_count), Some(1));
    let rss = owned_replica_sets(&env.client).await?;
    let name = new_rs_name(&d, &rss).context("new rs")?;
    assert_eq!(
        name,
        format!(
            "web-{}",
            sim::util::template_hash(&d.spec.template, Some(1))
        )
    );
    Ok(())
}

#[tokio::test]
async fn recreate_replaces_all_pods_at_once() -> anyhow::Result<()> {
    let env = env(1).await?;
    let mut d = web(2, 600);
    d["spec"]["strategy"] = json!({"type": "Recreate"});
    let api: Api<Deployment> = Api::namespaced(env.client.clone(), "default");
    api.create(&PostParams::default(), &from_json(d)?).await?;
    progressing(&api, 1, "NewReplicaSetAvailable", 10).await?;
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}}}});
    api.patch("web", &PatchParams::default(), &Patch::Strategic(patch))
        .await?;
    let d = eventually(15, "recreated", || async {
        let d = api.get("web").await?;
        let done = d.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
            && d.annotations()
                .get("deployment.kubernetes.io/revision")
                .map(String::as_str)
                == Some("2")
            && counts(&d) == [Some(2), Some(2), Some(2), Some(2), None];
        Ok(done.then_some(d))
    })
    .await?;
    assert_eq!(
        reason(&d, "Progressing").as_deref(),
        Some("NewReplicaSetAvailable")
    );
    let rss = owned_replica_sets(&env.client).await?;
    assert_eq!(rss.len(), 2);
    assert!(rss.iter().any(|rs| rs.spec.replicas == Some(0)));
    Ok(())
}
