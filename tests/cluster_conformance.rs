//! Conformance of the embedded API server, seen through kube-rs: one test per API convention.
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Discovery;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use serin::cluster::{ClusterConfig, ClusterHandle, Fault, start};

async fn cluster() -> (ClusterHandle, Client) {
    cluster_with(ClusterConfig::default()).await
}

async fn cluster_with(config: ClusterConfig) -> (ClusterHandle, Client) {
    let c = start(config).await.expect("cluster starts");
    let client = c.client().expect("client");
    (c, client)
}

fn status_of(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}}}
    }))
    .expect("valid deployment")
}

fn config_map(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .expect("valid configmap")
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

const WIDGET_CRD: &str = r#"{
  "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
  "metadata": {"name": "widgets.example.com"},
  "spec": {"group": "example.com", "scope": "Namespaced",
    "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "shortNames": ["wd"]},
    "versions": [{"name": "v1", "served": true, "storage": true,
      "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
      "schema": {"openAPIV3Schema": {"type": "object", "properties": {
        "spec": {"type": "object", "required": ["color"], "properties": {
          "color": {"type": "string", "enum": ["red", "blue"]},
          "size": {"type": "integer", "minimum": 1, "default": 3},
          "replicas": {"type": "integer"},
          "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
          "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
        "status": {"type": "object", "properties": {"replicas": {"type": "integer"}, "phase": {"type": "string"},
          "wait": {"type": "object", "properties": {"reason": {"type": "string"}, "since": {"type": "string"}}},
          "hold": {"type": "object", "nullable": true, "properties": {"reason": {"type": "string"}}}}}}}}}]}
}"#;

async fn widgets(client: &Client) -> Api<DynamicObject> {
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let crd: DynamicObject = serde_json::from_str(WIDGET_CRD).expect("crd json");
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("crd created");
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    Api::namespaced_with(client.clone(), "default", &ar)
}

fn widget(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}))
        .expect("widget json")
}

#[tokio::test]
async fn creating_an_existing_object_gets_already_exists() {
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    api.create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .expect("created");
    let s = status_of(
        api.create(&PostParams::default(), &config_map("a", json!({})))
            .await
            .expect_err("exists"),
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"));
}

#[tokio::test]
async fn stale_resource_version_gets_conflict() {
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let first = api
        .create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .expect("created");
    let mut fresh = first.clone();
    fresh.data = Some([("k".to_string(), "w".to_string())].into());
    api.replace("a", &PostParams::default(), &fresh)
        .await
        .expect("first writer wins");
    let s = status_of(
        api.replace("a", &PostParams::default(), &first)
            .await
            .expect_err("stale"),
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    let patch =
        json!({"metadata": {"resourceVersion": first.resource_version()}, "data": {"k": "x"}});
    let s = status_of(
        api.patch("a", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect_err("stale patch"),
    );
    assert_eq!(s.code, 409);
}

#[tokio::test]
async fn missing_objects_and_bad_input_get_not_found_and_invalid() {
    let (_c, client) = cluster().await;
    let api: Api<Deployment> = Api::default_namespaced(client);
    let s = status_of(api.get("nope").await.expect_err("missing"));
    assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
    assert_eq!(s.message, "deployments.apps \"nope\" not found");
    let s = status_of(
        api.create(&PostParams::default(), &deployment("bad", -1))
            .await
            .expect_err("invalid"),
    );
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    assert!(s.message.contains("spec.replicas"), "{}", s.message);
}

#[tokio::test]
async fn server_sets_uid_timestamps_generate_name_and_monotonic_versions() {
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let mut cm = config_map("", json!({}));
    cm.metadata.name = None;
    cm.metadata.generate_name = Some("gen-".into());
    let a = api
        .create(&PostParams::default(), &cm)
        .await
        .expect("created");
    let b = api
        .create(&PostParams::default(), &cm)
        .await
        .expect("created");
    assert!(a.name_any().starts_with("gen-") && a.name_any().len() == 9);
    assert_ne!(a.name_any(), b.name_any());
    assert!(a.uid().is_some() && a.metadata.creation_timestamp.is_some());
    let rv = |o: &ConfigMap| {
        o.resource_version()
            .and_then(|r| r.parse::<u64>().ok())
            .expect("numeric rv")
    };
    assert!(rv(&b) > rv(&a));
}

#[tokio::test]
async fn generation_increases_only_when_the_spec_changes() {
    let (_c, client) = cluster().await;
    let api: Api<Deployment> = Api::default_namespaced(client);
    let d = api
        .create(&PostParams::default(), &deployment("web", 1))
        .await
        .expect("created");
    assert_eq!(d.metadata.generation, Some(1));
    let d = merge(&api, "web", json!({"metadata": {"labels": {"x": "y"}}}))
        .await
        .expect("labels");
    assert_eq!(d.metadata.generation, Some(1));
    let d = merge_status(&api, "web", json!({"status": {"replicas": 1}}))
        .await
        .expect("status");
    assert_eq!(d.metadata.generation, Some(1));
    let d = merge(&api, "web", json!({"spec": {"replicas": 2}}))
        .await
        .expect("spec");
    assert_eq!(d.metadata.generation, Some(2));
}

#[tokio::test]
async fn a_write_that_changes_nothing_keeps_the_resource_version() {
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let a = api
        .create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .expect("created");
    let b = merge(&api, "a", json!({"data": {"k": "v"}}))
        .await
        .expect("no-op");
    assert_eq!(a.resource_version(), b.resource_version());
}

#[tokio::test]
async fn status_subresource_splits_spec_and_status_writes() {
    let (_c, client) = cluster().await;
    let api: Api<Deployment> = Api::default_namespaced(client);
    api.create(&PostParams::default(), &deployment("web", 1))
        .await
        .expect("created");
    let main = merge(
        &api,
        "web",
        json!({"spec": {"replicas": 3}, "status": {"replicas": 9}}),
    )
    .await
    .expect("main");
    assert_eq!(main.spec.replicas, Some(3));
    assert_eq!(main.status.as_ref().and_then(|s| s.replicas), None);
    let st = merge_status(
        &api,
        "web",
        json!({"spec": {"replicas": 7}, "status": {"replicas": 2}}),
    )
    .await
    .expect("status");
    assert_eq!(st.spec.replicas, Some(3));
    assert_eq!(st.status.as_ref().and_then(|s| s.replicas), Some(2));
}

#[tokio::test]
async fn scale_subresource_reads_and_writes_replicas() {
    let (_c, client) = cluster().await;
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    api.create(&PostParams::default(), &deployment("web", 2))
        .await
        .expect("created");
    let scale = api.get_scale("web").await.expect("scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(2));
    assert_eq!(
        scale.status.and_then(|s| s.selector).as_deref(),
        Some("app=web")
    );
    merge_scale(&api, "web", json!({"spec": {"replicas": 5}}))
        .await
        .expect("patched");
    assert_eq!(api.get("web").await.expect("get").spec.replicas, Some(5));

    let w = widgets(&client).await;
    w.create(
        &PostParams::default(),
        &widget("w", json!({"color": "red", "replicas": 1})),
    )
    .await
    .expect("widget");
    merge_scale(&w, "w", json!({"spec": {"replicas": 4}}))
        .await
        .expect("cr scale");
    assert_eq!(w.get("w").await.expect("get").data["spec"]["replicas"], 4);
}

#[tokio::test]
async fn merge_patch_follows_rfc_7386() {
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let mut cm = config_map("a", json!({"x": "1", "y": "2"}));
    cm.data = Some(
        [
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), "2".to_string()),
        ]
        .into(),
    );
    api.create(&PostParams::default(), &cm)
        .await
        .expect("created");
    let out = merge(
        &api,
        "a",
        json!({"metadata": {"labels": {"x": null}}, "data": {"b": null, "c": "3"}}),
    )
    .await
    .expect("patched");
    assert_eq!(out.labels().get("x"), None);
    assert_eq!(
        out.data,
        Some(
            [
                ("a".to_string(), "1".to_string()),
                ("c".to_string(), "3".to_string())
            ]
            .into()
        )
    );
}

#[tokio::test]
async fn json_patch_applies_operations_and_rejects_a_failed_test() {
    let (_c, client) = cluster().await;
    let api: Api<Deployment> = Api::default_namespaced(client);
    api.create(&PostParams::default(), &deployment("web", 1))
        .await
        .expect("created");
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/replicas", "value": 1},
        {"op": "replace", "path": "/spec/replicas", "value": 4}
    ]))
    .expect("patch");
    let d = api
        .patch("web", &PatchParams::default(), &Patch::<()>::Json(ops))
        .await
        .expect("applied");
    assert_eq!(d.spec.replicas, Some(4));
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/spec/replicas", "value": 1}]))
            .expect("patch");
    let s = status_of(
        api.patch("web", &PatchParams::default(), &Patch::<()>::Json(failing))
            .await
            .expect_err("test fails"),
    );
    assert_eq!(s.code, 422);
}

#[tokio::test]
async fn strategic_merge_patch_merges_lists_by_key_and_is_refused_for_custom_resources() {
    let (_c, client) = cluster().await;
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    api.create(&PostParams::default(), &deployment("web", 1))
        .await
        .expect("created");
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "side", "image": "busybox"},
        {"name": "app", "env": [{"name": "A", "value": "1"}]}]}}}});
    let d = api
        .patch("web", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .expect("patched");
    let containers = d
        .spec
        .template
        .spec
        .map(|s| s.containers)
        .expect("containers");
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["app", "side"]);
    assert_eq!(containers[0].image.as_deref(), Some("nginx:1.25"));
    assert_eq!(containers[0].env.as_ref().map(Vec::len), Some(1));
    assert_eq!(containers[1].image_pull_policy.as_deref(), Some("Always"));

    let w = widgets(&client).await;
    w.create(
        &PostParams::default(),
        &widget("w", json!({"color": "red"})),
    )
    .await
    .expect("widget");
    let s = status_of(
        w.patch(
            "w",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"size": 2}})),
        )
        .await
        .expect_err("415"),
    );
    assert_eq!(s.code, 415);
}

#[tokio::test]
async fn server_side_apply_records_managers_and_reports_conflicts() {
    let (_c, client) = cluster().await;
    let api: Api<Deployment> = Api::default_namespaced(client);
    let mut d = serde_json::to_value(deployment("web", 2)).expect("json");
    d["apiVersion"] = json!("apps/v1");
    d["kind"] = json!("Deployment");
    let created = api
        .patch("web", &PatchParams::apply("alice"), &Patch::Apply(&d))
        .await
        .expect("apply creates");
    let managers: Vec<String> = created
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(managers, ["alice"]);
    let bob = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}});
    let s = status_of(
        api.patch("web", &PatchParams::apply("bob"), &Patch::Apply(&bob))
            .await
            .expect_err("conflict"),
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert!(
        s.message.contains("conflict with \"alice\"") && s.message.contains(".spec.replicas"),
        "{}",
        s.message
    );
    let same = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 2}});
    api.patch("web", &PatchParams::apply("carol"), &Patch::Apply(&same))
        .await
        .expect("same value shares ownership");
    let forced = api
        .patch(
            "web",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(&bob),
        )
        .await
        .expect("force");
    assert_eq!(forced.spec.replicas, Some(5));
    let alice = forced
        .managed_fields()
        .iter()
        .find(|m| m.manager.as_deref() == Some("alice"))
        .expect("alice entry");
    let fields = serde_json::to_value(&alice.fields_v1).expect("fields");
    assert!(fields["f:spec"].get("f:replicas").is_none(), "{fields}");
}

#[tokio::test]
async fn server_side_apply_removes_fields_only_when_no_other_manager_owns_them() {
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let cm = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": data});
    api.patch(
        "a",
        &PatchParams::apply("one"),
        &Patch::Apply(cm(json!({"x": "1", "y": "2", "z": "3"}))),
    )
    .await
    .expect("one");
    api.patch(
        "a",
        &PatchParams::apply("two"),
        &Patch::Apply(cm(json!({"y": "2"}))),
    )
    .await
    .expect("two");
    let out = api
        .patch(
            "a",
            &PatchParams::apply("one"),
            &Patch::Apply(cm(json!({"x": "1"}))),
        )
        .await
        .expect("one again");
    let keys: Vec<&String> = out
        .data
        .as_ref()
        .map(|d| d.keys().collect())
        .unwrap_or_default();
    assert_eq!(keys, ["x", "y"]);
}

#[tokio::test]
async fn finalizers_block_deletion_until_the_last_is_removed() {
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let mut cm = config_map("a", json!({}));
    cm.metadata.finalizers = Some(vec!["example.com/one".into(), "example.com/two".into()]);
    api.create(&PostParams::default(), &cm)
        .await
        .expect("created");
    let pending = api
        .delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    let obj = pending.left().expect("still there");
    assert!(obj.metadata.deletion_timestamp.is_some());
    let s = status_of(
        merge(
            &api,
            "a",
            json!({"metadata": {"finalizers": ["example.com/one", "example.com/two", "new"]}}),
        )
        .await
        .expect_err("no new finalizers"),
    );
    assert_eq!(s.code, 422);
    merge(
        &api,
        "a",
        json!({"metadata": {"finalizers": ["example.com/two"]}}),
    )
    .await
    .expect("one gone");
    assert!(api.get_opt("a").await.expect("get").is_some());
    merge(&api, "a", json!({"metadata": {"finalizers": null}}))
        .await
        .expect("all gone");
    assert!(api.get_opt("a").await.expect("get").is_none());
}

async fn owned_config_map(api: &Api<ConfigMap>, name: &str, owner: &Deployment) {
    let mut cm = config_map(name, json!({}));
    cm.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: owner.name_any(),
            uid: owner.uid().expect("uid"),
            controller: Some(true),
            block_owner_deletion: Some(true),
        },
    ]);
    api.create(&PostParams::default(), &cm)
        .await
        .expect("dependent created");
}

/// A JSON merge patch of `name`.
async fn merge<K>(api: &Api<K>, name: &str, patch: Value) -> kube::Result<K>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
}

/// A JSON merge patch of `name`'s status subresource.
async fn merge_status<K>(api: &Api<K>, name: &str, patch: Value) -> kube::Result<K>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
}

/// A JSON merge patch of `name`'s scale subresource.
async fn merge_scale<K>(
    api: &Api<K>,
    name: &str,
    patch: Value,
) -> kube::Result<k8s_openapi::api::autoscaling::v1::Scale>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch_scale(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
}

/// Creates the Deployment `name` with a dependent ConfigMap `<name>-child`, then deletes the
/// Deployment with `policy`.
async fn delete_owner_of_a_child(
    deploys: &Api<Deployment>,
    cms: &Api<ConfigMap>,
    name: &str,
    policy: DeleteParams,
) {
    let owner = deploys
        .create(&PostParams::default(), &deployment(name, 1))
        .await
        .expect("created");
    owned_config_map(cms, &format!("{name}-child"), &owner).await;
    deploys.delete(name, &policy).await.expect("deleting");
}

#[tokio::test]
async fn garbage_collection_follows_the_propagation_policy() {
    let (_c, client) = cluster().await;
    let deploys: Api<Deployment> = Api::default_namespaced(client.clone());
    let cms: Api<ConfigMap> = Api::default_namespaced(client);

    delete_owner_of_a_child(&deploys, &cms, "bg", DeleteParams::background()).await;
    eventually("background dependents are collected", || async {
        cms.get_opt("bg-child").await.ok().flatten().is_none()
    })
    .await;

    delete_owner_of_a_child(&deploys, &cms, "fg", DeleteParams::foreground()).await;
    eventually("foreground owner goes after its dependents", || async {
        cms.get_opt("fg-child").await.ok().flatten().is_none()
            && deploys.get_opt("fg").await.ok().flatten().is_none()
    })
    .await;

    delete_owner_of_a_child(&deploys, &cms, "or", DeleteParams::orphan()).await;
    eventually("orphaned dependent loses its owner reference", || async {
        deploys.get_opt("or").await.ok().flatten().is_none()
            && cms
                .get_opt("or-child")
                .await
                .ok()
                .flatten()
                .is_some_and(|c| c.owner_references().is_empty())
    })
    .await;
}

#[tokio::test]
async fn namespaces_get_a_root_ca_and_deleting_one_removes_its_contents() {
    let (_c, client) = cluster().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "team"}})).expect("ns");
    nss.create(&PostParams::default(), &ns)
        .await
        .expect("created");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    assert!(
        cms.get("kube-root-ca.crt")
            .await
            .expect("root ca")
            .data
            .is_some_and(|d| d.contains_key("ca.crt"))
    );
    let mut held = config_map("held", json!({}));
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &held)
        .await
        .expect("created");
    nss.delete("team", &DeleteParams::default())
        .await
        .expect("deleting");
    let s = status_of(
        cms.create(&PostParams::default(), &config_map("late", json!({})))
            .await
            .expect_err("terminating"),
    );
    assert_eq!(s.code, 403);
    eventually("contents without finalizers go", || async {
        cms.list(&ListParams::default())
            .await
            .map(|l| l.items.len() == 1)
            .unwrap_or(false)
    })
    .await;
    assert_eq!(
        nss.get("team")
            .await
            .expect("still terminating")
            .status
            .and_then(|s| s.phase)
            .as_deref(),
        Some("Terminating")
    );
    merge(&cms, "held", json!({"metadata": {"finalizers": null}}))
        .await
        .expect("released");
    eventually("namespace goes once empty", || async {
        nss.get_opt("team").await.ok().flatten().is_none()
    })
    .await;
}

#[tokio::test]
async fn creating_a_crd_serves_its_kind_with_pruning_defaults_and_validation() {
    let (_c, client) = cluster().await;
    let w = widgets(&client).await;
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    let (ar, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"))
        .expect("discovered");
    assert_eq!(ar.plural, "widgets");
    assert!(
        caps.subresources
            .iter()
            .any(|(s, _)| s.plural == "widgets/status" || s.plural == "status"),
        "{caps:?}"
    );
    let created = w
        .create(
            &PostParams::default(),
            &widget(
                "w",
                json!({"color": "red", "junk": 1, "extra": {"kept": true}}),
            ),
        )
        .await
        .expect("created");
    assert_eq!(
        created.data["spec"],
        json!({"color": "red", "size": 3, "extra": {"kept": true}})
    );
    let s = status_of(
        w.create(
            &PostParams::default(),
            &widget(
                "bad",
                json!({"color": "green", "size": 0, "tags": ["a", "b", "c"]}),
            ),
        )
        .await
        .expect_err("invalid"),
    );
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    for field in ["spec.color", "spec.size", "spec.tags"] {
        assert!(
            s.message.contains(field),
            "{field} missing in {}",
            s.message
        );
    }
    let s = status_of(
        w.create(&PostParams::default(), &widget("bad", json!({})))
            .await
            .expect_err("required"),
    );
    assert!(
        s.message.contains("spec.color: Required value"),
        "{}",
        s.message
    );
}

#[tokio::test]
async fn an_applier_that_drops_a_whole_struct_leaves_null_which_only_a_nullable_field_accepts() {
    // structured-merge-diff removes the struct's fields one by one and stores the emptied struct
    // as null (kubernetes/kubernetes#103011); a CRD field that is not nullable then fails.
    let (_c, client) = cluster().await;
    let w = widgets(&client).await;
    w.create(
        &PostParams::default(),
        &widget("w", json!({"color": "red"})),
    )
    .await
    .expect("created");
    let apply = |status: Value| {
        let w = w.clone();
        async move {
            let body = json!({"apiVersion": "example.com/v1", "kind": "Widget",
                "metadata": {"name": "w"}, "status": status});
            w.patch_status("w", &PatchParams::apply("ctl"), &Patch::Apply(&body))
                .await
        }
    };
    apply(
        json!({"phase": "Waiting", "wait": {"reason": "Pods", "since": "now"},
        "hold": {"reason": "gate"}}),
    )
    .await
    .expect("first apply");
    let e = apply(json!({"phase": "Ready", "hold": {"reason": "gate"}}))
        .await
        .expect_err("the emptied struct is null, and the field is not nullable");
    let s = status_of(e);
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{s:?}");
    assert!(
        s.message.contains("status.wait") && s.message.contains("null"),
        "{}",
        s.message
    );
    // Dropping the nullable struct is accepted and stores null.
    let written = apply(json!({"phase": "Ready", "wait": {"reason": "Pods", "since": "now"}}))
        .await
        .expect("a nullable struct may become null");
    assert_eq!(written.data["status"]["hold"], Value::Null);
    assert!(written.data["status"].get("hold").is_some());
    assert_eq!(written.data["status"]["phase"], "Ready");
}

#[tokio::test]
async fn custom_resource_status_is_only_written_through_the_subresource() {
    let (_c, client) = cluster().await;
    let w = widgets(&client).await;
    let mut obj = widget("w", json!({"color": "red"}));
    obj.data["status"] = json!({"phase": "Ignored"});
    let created = w
        .create(&PostParams::default(), &obj)
        .await
        .expect("created");
    assert!(created.data.get("status").is_none());
    let st = merge_status(&w, "w", json!({"status": {"phase": "Ready"}}))
        .await
        .expect("status");
    assert_eq!(st.data["status"]["phase"], "Ready");
    assert_eq!(st.metadata.generation, Some(1));
}

#[tokio::test]
async fn lists_honour_label_and_field_selectors_across_namespaces() {
    let (_c, client) = cluster().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "other"}})).expect("ns"),
    )
    .await
    .expect("ns");
    let here: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let there: Api<ConfigMap> = Api::namespaced(client.clone(), "other");
    here.create(
        &PostParams::default(),
        &config_map("a", json!({"app": "web", "tier": "front"})),
    )
    .await
    .expect("a");
    here.create(
        &PostParams::default(),
        &config_map("b", json!({"app": "api"})),
    )
    .await
    .expect("b");
    there
        .create(
            &PostParams::default(),
            &config_map("c", json!({"app": "web"})),
        )
        .await
        .expect("c");
    let all: Api<ConfigMap> = Api::all(client);
    let names = |l: kube::core::ObjectList<ConfigMap>| {
        let mut n: Vec<String> = l
            .items
            .iter()
            .map(|o| o.name_any())
            .filter(|n| n != "kube-root-ca.crt")
            .collect();
        n.sort();
        n
    };
    let cases = [
        ("app=web", "", vec!["a", "c"]),
        ("app!=web", "", vec!["b"]),
        ("app in (api,web),tier", "", vec!["a"]),
        ("app notin (web)", "", vec!["b"]),
        ("!tier,app", "", vec!["b", "c"]),
        ("", "metadata.name=c", vec!["c"]),
        ("app", "metadata.namespace!=default", vec!["c"]),
    ];
    for (labels, fields, want) in cases {
        let lp = ListParams::default().labels(labels).fields(fields);
        let list = all.list(&lp).await.expect("list");
        assert!(list.metadata.resource_version.is_some());
        assert_eq!(names(list), want, "labels {labels:?} fields {fields:?}");
    }
    let s = status_of(
        all.list(&ListParams::default().fields("spec.nope=1"))
            .await
            .expect_err("unsupported"),
    );
    assert_eq!(s.code, 400);
}

#[tokio::test]
async fn watch_sends_every_event_after_the_resource_version() {
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let a = api
        .create(&PostParams::default(), &config_map("a", json!({"w": "1"})))
        .await
        .expect("a");
    api.create(&PostParams::default(), &config_map("b", json!({"w": "1"})))
        .await
        .expect("b");
    api.delete("a", &DeleteParams::default())
        .await
        .expect("deleted");
    let rv = a.resource_version().expect("rv");
    let mut stream = api
        .watch(&WatchParams::default().labels("w=1").timeout(5), &rv)
        .await
        .expect("watch")
        .boxed();
    let mut seen = vec![];
    while let Some(ev) = stream.try_next().await.expect("event") {
        match ev {
            WatchEvent::Added(o) => seen.push(format!("ADDED {}", o.name_any())),
            WatchEvent::Deleted(o) => seen.push(format!("DELETED {}", o.name_any())),
            other => seen.push(format!("{other:?}")),
        }
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen, ["ADDED b", "DELETED a"]);
}

#[tokio::test]
async fn watch_from_zero_lists_current_state_and_selectors_turn_updates_into_adds_and_deletes() {
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    api.create(&PostParams::default(), &config_map("a", json!({"w": "1"})))
        .await
        .expect("a");
    let mut stream = api
        .watch(&WatchParams::default().labels("w=1").timeout(5), "0")
        .await
        .expect("watch")
        .boxed();
    let first = stream.try_next().await.expect("event");
    assert!(
        matches!(first, Some(WatchEvent::Added(ref o)) if o.name_any() == "a"),
        "{first:?}"
    );
    merge(&api, "a", json!({"metadata": {"labels": {"w": "2"}}}))
        .await
        .expect("relabel");
    let left = stream.try_next().await.expect("event");
    assert!(matches!(left, Some(WatchEvent::Deleted(_))), "{left:?}");
    merge(&api, "a", json!({"metadata": {"labels": {"w": "1"}}}))
        .await
        .expect("relabel");
    let back = stream.try_next().await.expect("event");
    assert!(matches!(back, Some(WatchEvent::Added(_))), "{back:?}");
}

#[tokio::test]
async fn a_resource_version_older_than_the_history_gets_410_gone() {
    let (_c, client) = cluster_with(ClusterConfig {
        watch_history: 5,
        ..Default::default()
    })
    .await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    for i in 0..10 {
        api.create(
            &PostParams::default(),
            &config_map(&format!("c{i}"), json!({})),
        )
        .await
        .expect("created");
    }
    let mut stream = api
        .watch(&WatchParams::default(), "2")
        .await
        .expect("watch")
        .boxed();
    match stream.try_next().await.expect("event") {
        Some(WatchEvent::Error(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test]
async fn watch_bookmarks_arrive_when_allowed() {
    let (_c, client) = cluster_with(ClusterConfig {
        bookmark_interval: Duration::from_millis(50),
        ..Default::default()
    })
    .await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let list = api.list(&ListParams::default()).await.expect("list");
    let rv = list.metadata.resource_version.expect("rv");
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .expect("watch")
        .boxed();
    let ev = stream.try_next().await.expect("event");
    assert!(
        matches!(ev, Some(WatchEvent::Bookmark(ref b)) if b.metadata.resource_version == rv),
        "{ev:?}"
    );
}

#[tokio::test]
async fn watcher_and_reflector_recover_after_a_forced_410() {
    let (c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    api.create(&PostParams::default(), &config_map("before", json!({})))
        .await
        .expect("before");
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api.clone(), watcher::Config::default()))
        .default_backoff()
        .applied_objects();
    let task = tokio::spawn(stream.for_each(|_| async {}));
    eventually("reflector lists", || {
        let r = reader.clone();
        async move { r.state().iter().any(|o| o.name_any() == "before") }
    })
    .await;
    c.faults().add(Fault {
        verb: Some("watch".into()),
        close_watch_after_secs: Some(0),
        watch_gone: true,
        ..Default::default()
    });
    api.create(&PostParams::default(), &config_map("during", json!({})))
        .await
        .expect("during");
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.faults().clear();
    api.create(&PostParams::default(), &config_map("after", json!({})))
        .await
        .expect("after");
    eventually("reflector catches up after 410", || {
        let r = reader.clone();
        async move {
            let names: Vec<String> = r.state().iter().map(|o| o.name_any()).collect();
            ["before", "during", "after"]
                .iter()
                .all(|n| names.iter().any(|x| x == n))
        }
    })
    .await;
    task.abort();
}

#[tokio::test]
async fn a_small_controller_reconciles_every_object() {
    use kube::runtime::controller::{Action, Controller};
    use std::sync::Arc;
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    for n in ["x", "y"] {
        api.create(
            &PostParams::default(),
            &config_map(n, json!({"managed": "yes"})),
        )
        .await
        .expect("created");
    }
    #[derive(Debug, thiserror::Error)]
    #[error("reconcile: {0}")]
    struct E(#[from] kube::Error);
    async fn reconcile(cm: Arc<ConfigMap>, api: Arc<Api<ConfigMap>>) -> Result<Action, E> {
        if cm.annotations().get("seen").is_none() {
            api.patch(
                &cm.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"seen": "yes"}}})),
            )
            .await?;
        }
        Ok(Action::await_change())
    }
    let ctl = Controller::new(
        api.clone(),
        watcher::Config::default().labels("managed=yes"),
    )
    .run(
        reconcile,
        |_, _, _| Action::await_change(),
        Arc::new(api.clone()),
    )
    .for_each(|_| async {});
    let task = tokio::spawn(ctl);
    eventually("both reconciled", || async {
        let l = api
            .list(&ListParams::default().labels("managed=yes"))
            .await
            .expect("list");
        l.items.iter().all(|c| c.annotations().contains_key("seen"))
    })
    .await;
    task.abort();
}

#[tokio::test]
async fn services_get_cluster_ips_and_pods_get_ips_phase_and_conditions() {
    let (_c, client) = cluster().await;
    let svcs: Api<Service> = Api::default_namespaced(client.clone());
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})).expect("svc");
    let svc = svcs
        .create(&PostParams::default(), &svc)
        .await
        .expect("svc");
    let spec = svc.spec.expect("spec");
    assert!(
        spec.cluster_ip
            .as_deref()
            .is_some_and(|ip| ip.starts_with("10.96."))
    );
    assert_eq!(
        spec.ports.expect("ports")[0].target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(80))
    );
    let pods: Api<Pod> = Api::default_namespaced(client);
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}})).expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("pod");
    let pod = pods.get("p").await.expect("get");
    let status = pod.status.expect("status");
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert!(status.pod_ip.is_some() && status.host_ip.is_some());
    assert!(
        status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );
}

#[tokio::test]
async fn delete_collection_removes_only_selected_objects() {
    let (_c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    api.create(&PostParams::default(), &config_map("a", json!({"k": "1"})))
        .await
        .expect("a");
    api.create(&PostParams::default(), &config_map("b", json!({"k": "2"})))
        .await
        .expect("b");
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("k=1"),
    )
    .await
    .expect("deleted");
    assert!(api.get_opt("a").await.expect("get").is_none());
    assert!(api.get_opt("b").await.expect("get").is_some());
}

#[tokio::test]
async fn requests_are_counted_by_verb_resource_and_user_agent() {
    let (c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    c.requests().reset();
    api.create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .expect("a");
    api.get("a").await.expect("get");
    api.get("a").await.expect("get");
    let snap = c.requests().snapshot();
    let gets: Vec<_> = snap
        .iter()
        .filter(|r| r.key.verb == "get" && r.key.resource == "configmaps")
        .collect();
    assert_eq!(gets.len(), 1);
    assert_eq!(
        (
            gets[0].count,
            gets[0].key.name.as_str(),
            gets[0].key.namespace.as_str()
        ),
        (2, "a", "default")
    );
    assert_eq!(c.requests().total(), 3);
    let http = reqwest::Client::builder()
        .user_agent("probe/1.0")
        .build()
        .expect("http");
    http.get(format!("{}/api/v1/namespaces/default/configmaps", c.url()))
        .send()
        .await
        .expect("list");
    let snap = c.requests().snapshot();
    assert!(
        snap.iter()
            .any(|r| r.key.verb == "list" && r.key.user_agent == "probe/1.0" && r.count == 1),
        "{snap:?}"
    );
    let body: Value = http
        .get(format!("{}/admin/requests", c.url()))
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    assert_eq!(body.as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn writes_are_logged_in_order_with_their_user_agent_and_status_code() {
    let (c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    api.create(&PostParams::default(), &config_map("w", json!({})))
        .await
        .expect("create");
    api.get("w").await.expect("reads are not logged");
    let again = api
        .create(&PostParams::default(), &config_map("w", json!({})))
        .await;
    assert!(again.is_err());
    let writes: Vec<_> = c
        .requests()
        .writes()
        .into_iter()
        .filter(|w| w.key.resource == "configmaps")
        .collect();
    let summary: Vec<_> = writes
        .iter()
        .map(|w| (w.key.verb.as_str(), w.key.name.as_str(), w.code))
        .collect();
    // The create carries no name in its path.
    assert_eq!(summary, vec![("create", "", 201), ("create", "", 409)]);
    assert!(writes[0].seq < writes[1].seq && writes[0].at <= writes[1].at);
    let body: Value = reqwest::get(format!("{}/admin/writes", c.url()))
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    let codes: Vec<_> = body
        .as_array()
        .into_iter()
        .flatten()
        .filter(|w| w["resource"] == "configmaps")
        .map(|w| w["code"].clone())
        .collect();
    assert_eq!(codes, vec![json!(201), json!(409)]);
}

#[tokio::test]
async fn lease_updates_are_optimistic_and_micro_times_keep_six_digits() {
    use k8s_openapi::api::coordination::v1::Lease;
    let (_c, client) = cluster().await;
    let api: Api<Lease> = Api::namespaced(client, "kube-system");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "lock"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 10,
                 "acquireTime": "2024-05-01T10:00:00.000000Z", "renewTime": "2024-05-01T10:00:00.000000Z"}
    }))
    .expect("lease");
    let created = api
        .create(&PostParams::default(), &lease)
        .await
        .expect("create");
    // Two candidates update from the same resourceVersion: the second gets 409 Conflict.
    let mut by_b = created.clone();
    by_b.spec.get_or_insert_default().holder_identity = Some("b".into());
    let mut by_c = created.clone();
    by_c.spec.get_or_insert_default().holder_identity = Some("c".into());
    api.replace("lock", &PostParams::default(), &by_b)
        .await
        .expect("b wins");
    let lost = status_of(
        api.replace("lock", &PostParams::default(), &by_c)
            .await
            .expect_err("c is stale"),
    );
    assert_eq!((lost.code, lost.reason.as_str()), (409, "Conflict"));
    // Times are stored with microseconds in UTC, as MicroTime marshals them.
    let raw = Api::<DynamicObject>::namespaced_with(
        api.clone().into_client(),
        "kube-system",
        &ApiResource::erase::<Lease>(&()),
    );
    let stored = raw.get("lock").await.expect("get");
    assert_eq!(
        stored.data["spec"]["renewTime"],
        json!("2024-05-01T10:00:00.000000Z")
    );
    let bad = merge(
        &raw,
        "lock",
        json!({"spec": {"renewTime": "2024-05-01T10:00:00Z"}}),
    )
    .await
    .expect_err("seconds-only MicroTime");
    assert_eq!(status_of(bad).code, 400);
    // An update of a missing Lease creates it, as the real server allows for Leases.
    let mut fresh = lease.clone();
    fresh.metadata.name = Some("other".into());
    api.replace("other", &PostParams::default(), &fresh)
        .await
        .expect("create on update");
}

#[tokio::test]
async fn injected_faults_fail_delay_and_pause_requests() {
    let (c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    c.faults().add(Fault {
        verb: Some("list".into()),
        resource: Some("configmaps".into()),
        error_rate: 1.0,
        error_code: 500,
        ..Default::default()
    });
    let s = status_of(
        api.list(&ListParams::default())
            .await
            .expect_err("injected"),
    );
    assert_eq!(s.code, 500);
    api.get_opt("x").await.expect("other verbs still work");
    c.faults().clear();
    // kube-rs retries 429s itself, so look at the raw answer.
    c.faults().add(Fault {
        verb: Some("get".into()),
        error_rate: 1.0,
        error_code: 429,
        ..Default::default()
    });
    let raw = reqwest::get(format!(
        "{}/api/v1/namespaces/default/configmaps/x",
        c.url()
    ))
    .await
    .expect("raw");
    assert_eq!(raw.status().as_u16(), 429);
    assert!(raw.headers().contains_key("retry-after"));
    c.faults().clear();
    let resp = reqwest::Client::new()
        .post(format!("{}/admin/faults", c.url()))
        .json(&json!({"verb": "get", "latencyMs": 150}))
        .send()
        .await
        .expect("admin");
    assert!(resp.status().is_success());
    let t = std::time::Instant::now();
    api.get_opt("x").await.expect("slow get");
    assert!(t.elapsed() >= Duration::from_millis(150));
    c.faults().clear();
    c.faults().pause();
    let pending = tokio::time::timeout(Duration::from_millis(200), api.get_opt("x")).await;
    assert!(pending.is_err(), "a paused server does not answer");
    c.faults().resume();
    api.get_opt("x").await.expect("answers after resume");
}

#[tokio::test]
async fn server_side_apply_without_a_field_manager_is_invalid() {
    let (c, _client) = cluster().await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/namespaces/default/configmaps/ssa", c.url());
    let body = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {a: b}\n";
    let res = http
        .patch(&url)
        .header("Content-Type", "application/apply-patch+yaml")
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status().as_u16(), 422);
    let status: Value = res.json().await.expect("json");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    assert_eq!(status["details"]["causes"][0]["field"], "fieldManager");
    let res = http
        .patch(format!("{url}?fieldManager=me"))
        .header("Content-Type", "application/apply-patch+yaml")
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status().as_u16(), 201);
}

#[tokio::test]
async fn deleting_an_object_kept_by_finalizers_answers_200_with_the_object() {
    let (c, client) = cluster().await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    for name in ["kept", "orphan-false"] {
        let mut cm = config_map(name, json!({}));
        cm.metadata.finalizers = Some(vec!["example.com/keep".into()]);
        api.create(&PostParams::default(), &cm)
            .await
            .expect("created");
    }
    let http = reqwest::Client::new();
    let base = format!("{}/api/v1/namespaces/default/configmaps", c.url());
    let res = http
        .delete(format!("{base}/kept"))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status().as_u16(), 200);
    let obj: Value = res.json().await.expect("json");
    assert_eq!(obj["kind"], "ConfigMap");
    assert!(obj["metadata"]["deletionTimestamp"].is_string(), "{obj}");
    // The one case kube-apiserver answers 202: the deprecated orphanDependents=false.
    let res = http
        .delete(format!("{base}/orphan-false"))
        .json(&json!({"kind": "DeleteOptions", "apiVersion": "v1", "orphanDependents": false}))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status().as_u16(), 202);
    // Without finalizers the object goes at once: 200 with its last state.
    api.create(&PostParams::default(), &config_map("plain", json!({})))
        .await
        .expect("created");
    let res = http
        .delete(format!("{base}/plain"))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status().as_u16(), 200);
}

fn new_style_event(name: &str) -> k8s_openapi::api::events::v1::Event {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "eventTime": "2025-01-01T00:00:00.000000Z", "action": "Promote", "reason": "Synced",
        "type": "Warning", "note": "canary web promoted",
        "regarding": {"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "web", "namespace": "default", "uid": "u-1"},
        "related": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web-primary", "namespace": "default"},
        "reportingController": "serin", "reportingInstance": "serin-0"
    }))
    .expect("valid events.k8s.io event")
}

#[tokio::test]
async fn an_event_written_through_events_k8s_io_is_read_and_watched_through_core_v1() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event as NewEvent;
    let (_c, client) = cluster().await;
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let new: Api<NewEvent> = Api::namespaced(client.clone(), "default");
    let rv = core
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    let mut stream = core
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .expect("watch")
        .boxed();
    let created = new
        .create(&PostParams::default(), &new_style_event("web.1"))
        .await
        .expect("create through events.k8s.io");

    let got = core.get("web.1").await.expect("get through core");
    assert_eq!(got.metadata.uid, created.metadata.uid);
    assert_eq!(
        got.metadata.resource_version,
        created.metadata.resource_version
    );
    assert_eq!(got.message.as_deref(), Some("canary web promoted"));
    assert_eq!(got.involved_object.kind.as_deref(), Some("Canary"));
    assert_eq!(got.involved_object.name.as_deref(), Some("web"));
    assert_eq!(got.reporting_component.as_deref(), Some("serin"));
    assert_eq!(got.reporting_instance.as_deref(), Some("serin-0"));
    assert_eq!(got.action.as_deref(), Some("Promote"));
    assert_eq!(
        got.related.and_then(|r| r.name).as_deref(),
        Some("web-primary")
    );
    assert!(got.event_time.is_some());

    let mut seen = None;
    while let Some(ev) = stream.try_next().await.expect("watch event") {
        if let WatchEvent::Added(e) = ev {
            seen = Some(e);
            break;
        }
    }
    let seen = seen.expect("the core watch sees the new-style event");
    assert_eq!(seen.message.as_deref(), Some("canary web promoted"));

    // Field selectors through either API, on the mapped fields.
    let by_core = core
        .list(&ListParams::default().fields("involvedObject.kind=Canary,involvedObject.name=web,reason=Synced,type=Warning,source=serin,reportingComponent=serin"))
        .await
        .expect("core field selector");
    assert_eq!(by_core.items.len(), 1);
    let by_new = new
        .list(
            &ListParams::default()
                .fields("regarding.kind=Canary,regarding.name=web,reportingController=serin"),
        )
        .await
        .expect("events.k8s.io field selector");
    assert_eq!(by_new.items.len(), 1);
    let none = core
        .list(&ListParams::default().fields("involvedObject.name=other"))
        .await
        .expect("core field selector");
    assert!(none.items.is_empty());
    let all: Api<CoreEvent> = Api::all(client.clone());
    assert_eq!(
        all.list(&ListParams::default())
            .await
            .expect("/api/v1/events")
            .items
            .len(),
        1
    );

    // A patch through events.k8s.io (kube-runtime's Recorder merge-patches a series) changes the
    // one object both APIs show.
    let patched = merge(&new, "web.1", json!({"series": {"count": 2, "lastObservedTime": "2025-01-01T00:01:00.000000Z"}, "note": "again"})).await
        .expect("merge patch through events.k8s.io");
    let again = core.get("web.1").await.expect("get through core");
    assert_eq!(again.message.as_deref(), Some("again"));
    assert_eq!(again.series.and_then(|s| s.count), Some(2));
    assert_eq!(
        again.metadata.resource_version,
        patched.metadata.resource_version
    );
}

#[tokio::test]
async fn an_event_written_through_core_v1_is_listed_through_events_k8s_io() {
    use k8s_openapi::api::core::v1::Event as CoreEvent;
    use k8s_openapi::api::events::v1::Event as NewEvent;
    let (_c, client) = cluster().await;
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let new: Api<NewEvent> = Api::namespaced(client.clone(), "default");
    let old_style: CoreEvent = serde_json::from_value(json!({
        "metadata": {"name": "web.2", "namespace": "default"},
        "involvedObject": {"kind": "Deployment", "name": "web", "namespace": "default"},
        "reason": "ScalingReplicaSet", "message": "Scaled up replica set web-1 to 2", "type": "Normal",
        "source": {"component": "deployment-controller", "host": "node-1"}, "count": 3,
        "firstTimestamp": "2025-01-01T00:00:00Z", "lastTimestamp": "2025-01-01T00:05:00Z"
    }))
    .expect("valid core event");
    let created = core
        .create(&PostParams::default(), &old_style)
        .await
        .expect("create through core");
    let listed = new
        .list(
            &ListParams::default().fields("regarding.kind=Deployment,source=deployment-controller"),
        )
        .await
        .expect("list through events.k8s.io");
    assert_eq!(listed.items.len(), 1);
    let e = &listed.items[0];
    assert_eq!(e.metadata.uid, created.metadata.uid);
    assert_eq!(e.note.as_deref(), Some("Scaled up replica set web-1 to 2"));
    assert_eq!(
        e.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("web")
    );
    assert_eq!(e.deprecated_count, Some(3));
    assert_eq!(
        e.deprecated_source
            .as_ref()
            .and_then(|s| s.component.as_deref()),
        Some("deployment-controller")
    );
    assert!(e.deprecated_last_timestamp.is_some());
    let got = new.get("web.2").await.expect("get through events.k8s.io");
    assert_eq!(got.reason.as_deref(), Some("ScalingReplicaSet"));
    new.delete("web.2", &DeleteParams::default())
        .await
        .expect("delete through events.k8s.io");
    assert!(core.get_opt("web.2").await.expect("get").is_none());
}
