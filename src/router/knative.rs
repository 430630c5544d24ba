//! The `knative` router: a Knative Service (`serving.knative.dev/v1`) is its own routing object.
//! The primary is the revision named by the `flagger.app/primary-revision` annotation, the canary
//! is the latest revision, and `spec.traffic` splits between them. Pure builders and readers,
//! plus [`KnativeRouter`] and [`set_primary_revision`] (API I/O).
//!
//! Writes are JSON merge patches under the field manager `serin`, not server-side apply: the
//! annotation (written at initialisation and promotion) and the traffic block (written by the
//! router) are two writes to the same object, and one apply set that lacks the other field would
//! remove it. A merge patch replaces `spec.traffic` whole, as Flagger's update does, and leaves
//! every other field (the user's template, other annotations) alone.
use async_trait::async_trait;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use super::{Error, INITIAL, TrafficRouter};
use crate::api::Canary;
use crate::core::Routes;
pub use crate::core::knative::{
    API_VERSION, KIND, PRIMARY_REVISION_ANNOTATION, ServiceState, read_state, resource,
};

/// `spec.traffic` for a split, in Flagger's order: the latest revision (the canary) first, then
/// the primary revision by name.
pub fn traffic(primary_revision: &str, routes: Routes) -> Value {
    json!([
        {"latestRevision": true, "percent": routes.canary},
        {"revisionName": primary_revision, "percent": routes.primary},
    ])
}

fn is_latest(t: &Value) -> bool {
    t["latestRevision"].as_bool().unwrap_or(false)
}

/// The split in a traffic list (`spec.traffic` or `status.traffic`): the canary is the entry
/// with `latestRevision: true`, the primary the other entry naming the primary revision. Knative
/// resolves the latest entry's revision name in the status, so the primary entry is never the
/// latest one even when both name the same revision.
pub fn read_traffic(traffic: &Value, primary_revision: &str) -> Result<Routes, Error> {
    let entries = traffic.as_array().map(Vec::as_slice).unwrap_or_default();
    let canary = entries.iter().find(|t| is_latest(t));
    let primary = entries
        .iter()
        .find(|t| !is_latest(t) && t["revisionName"] == primary_revision);
    match (primary, canary) {
        (Some(p), Some(c)) => super::non_zero(
            Routes::split(
                super::weight_of(p.get("percent")),
                super::weight_of(c.get("percent")),
            ),
            "Knative traffic",
        ),
        _ => Err(Error::Malformed(format!(
            "Knative traffic does not split between the latest revision and {primary_revision}"
        ))),
    }
}

/// Reads the split Knative actually routes (`status.traffic`), once it has reconciled the spec.
pub fn read_routes(name: &str, live: &Value) -> Result<Routes, Error> {
    let state = read_state(live);
    let primary = state.primary_revision.ok_or_else(|| {
        Error::NotReady(format!(
            "Knative Service {name} has no {PRIMARY_REVISION_ANNOTATION} annotation"
        ))
    })?;
    if !state.reconciled {
        return Err(Error::NotReady(format!(
            "Knative has not reconciled the traffic of Service {name} yet"
        )));
    }
    read_traffic(&live["status"]["traffic"], &primary)
}

/// The merge patch that sets the traffic split.
pub fn traffic_patch(primary_revision: &str, routes: Routes) -> Value {
    json!({"spec": {"traffic": traffic(primary_revision, routes)}})
}

/// The merge patch that names the primary revision.
pub fn primary_revision_patch(revision: &str) -> Value {
    json!({"metadata": {"annotations": {PRIMARY_REVISION_ANNOTATION: revision}}})
}

/// The merge patch that gives the Service back to Knative's defaults: no primary annotation and
/// no traffic block (all traffic to the latest ready revision).
pub fn release_patch() -> Value {
    json!({
        "metadata": {"annotations": {PRIMARY_REVISION_ANNOTATION: null}},
        "spec": {"traffic": null},
    })
}

fn target_name(canary: &Canary) -> Result<String, Error> {
    canary
        .spec
        .target_ref
        .as_ref()
        .map(|t| t.name.clone())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Error::Invalid("spec.targetRef.name is empty".into()))
}

fn api(client: &kube::Client, canary: &Canary) -> Api<DynamicObject> {
    let ns = canary.metadata.namespace.clone().unwrap_or_default();
    Api::namespaced_with(client.clone(), &ns, &resource())
}

async fn live(client: &kube::Client, canary: &Canary, name: &str) -> Result<Value, Error> {
    let ns = canary.metadata.namespace.as_deref();
    super::get(client, ns, &resource(), name)
        .await?
        .ok_or_else(|| Error::Missing(format!("Knative Service {name}")))
}

async fn patch(
    client: &kube::Client,
    canary: &Canary,
    name: &str,
    body: &Value,
) -> Result<(), Error> {
    let params = PatchParams {
        field_manager: Some(crate::core::FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    api(client, canary)
        .patch(name, &params, &Patch::Merge(body))
        .await?;
    Ok(())
}

/// Names `revision` as the primary of the canary's Knative Service (initialisation, promotion).
pub async fn set_primary_revision(
    client: &kube::Client,
    canary: &Canary,
    revision: &str,
) -> Result<(), Error> {
    let name = target_name(canary)?;
    patch(client, canary, &name, &primary_revision_patch(revision)).await
}

/// The Knative router.
pub struct KnativeRouter {
    client: kube::Client,
}

impl KnativeRouter {
    /// A router for Knative Services.
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl TrafficRouter for KnativeRouter {
    /// Names the latest created revision as primary when no revision is named yet (as Flagger
    /// does), and writes the initial split when `spec.traffic` is not a split between the latest
    /// revision and the primary; an existing split keeps its weights.
    async fn reconcile(&self, canary: &Canary) -> Result<(), Error> {
        let name = target_name(canary)?;
        let live = live(&self.client, canary, &name).await?;
        let state = read_state(&live);
        let primary = match state.primary_revision {
            Some(p) => p,
            None => {
                let latest = state.latest_created.ok_or_else(|| {
                    Error::NotReady(format!("Knative Service {name} has no revision yet"))
                })?;
                patch(
                    &self.client,
                    canary,
                    &name,
                    &primary_revision_patch(&latest),
                )
                .await?;
                latest
            }
        };
        if read_traffic(&live["spec"]["traffic"], &primary).is_err() {
            patch(
                &self.client,
                canary,
                &name,
                &traffic_patch(&primary, INITIAL),
            )
            .await?;
        }
        Ok(())
    }

    async fn set_routes(&self, canary: &Canary, routes: Routes) -> Result<(), Error> {
        let name = target_name(canary)?;
        let live = live(&self.client, canary, &name).await?;
        let primary = read_state(&live).primary_revision.ok_or_else(|| {
            Error::NotReady(format!(
                "Knative Service {name} has no {PRIMARY_REVISION_ANNOTATION} annotation"
            ))
        })?;
        patch(
            &self.client,
            canary,
            &name,
            &traffic_patch(&primary, routes),
        )
        .await
    }

    async fn routes(&self, canary: &Canary) -> Result<Routes, Error> {
        let name = target_name(canary)?;
        let live = live(&self.client, canary, &name).await?;
        read_routes(&name, &live)
    }

    /// Drops the annotation and the traffic block, so that Knative routes to the latest ready
    /// revision again (Flagger drops only the annotation and leaves the split pinned).
    async fn finalize(&self, canary: &Canary) -> Result<(), Error> {
        let name = target_name(canary)?;
        match live(&self.client, canary, &name).await {
            Ok(_) => patch(&self.client, canary, &name, &release_patch()).await,
            Err(Error::Missing(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(primary: i32, canary: i32) -> Routes {
        Routes {
            primary,
            canary,
            mirrored: false,
        }
    }

    fn service(generation: i64, observed: i64, status_traffic: Value) -> Value {
        json!({
            "apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": "podinfo", "generation": generation,
                "annotations": {PRIMARY_REVISION_ANNOTATION: "podinfo-00001"}},
            "status": {
                "observedGeneration": observed,
                "latestCreatedRevisionName": "podinfo-00002",
                "latestReadyRevisionName": "podinfo-00002",
                "conditions": [{"type": "Ready", "status": "True"}],
                "traffic": status_traffic,
            }
        })
    }

    #[test]
    fn traffic_lists_the_latest_revision_first_then_the_primary_by_name() {
        assert_eq!(
            traffic("podinfo-00001", split(70, 30)),
            json!([
                {"latestRevision": true, "percent": 30},
                {"revisionName": "podinfo-00001", "percent": 70},
            ])
        );
    }

    #[test]
    fn weights_are_read_from_the_status_traffic() {
        let live = service(
            3,
            3,
            json!([
                {"latestRevision": true, "revisionName": "podinfo-00002", "percent": 40},
                {"latestRevision": false, "revisionName": "podinfo-00001", "percent": 60},
            ]),
        );
        assert_eq!(read_routes("podinfo", &live).ok(), Some(split(60, 40)));
    }

    #[test]
    fn the_primary_entry_is_not_the_latest_entry_when_both_name_one_revision() {
        let t = json!([
            {"latestRevision": true, "revisionName": "podinfo-00001", "percent": 0},
            {"latestRevision": false, "revisionName": "podinfo-00001", "percent": 100},
        ]);
        assert_eq!(read_traffic(&t, "podinfo-00001").ok(), Some(split(100, 0)));
    }

    #[test]
    fn a_status_older_than_the_spec_is_not_read() {
        let live = service(4, 3, json!([]));
        assert!(matches!(
            read_routes("podinfo", &live),
            Err(Error::NotReady(_))
        ));
    }

    #[test]
    fn traffic_without_the_primary_or_the_latest_entry_is_not_a_split() {
        let only_latest =
            json!([{"latestRevision": true, "revisionName": "podinfo-00002", "percent": 100}]);
        assert!(read_traffic(&only_latest, "podinfo-00001").is_err());
        let other_primary = json!([
            {"latestRevision": true, "percent": 10},
            {"revisionName": "podinfo-00003", "percent": 90},
        ]);
        assert!(read_traffic(&other_primary, "podinfo-00001").is_err());
        assert!(read_traffic(&Value::Null, "podinfo-00001").is_err());
    }

    #[test]
    fn state_reads_revisions_annotation_readiness_and_served_revisions() {
        let live = service(
            2,
            2,
            json!([{"latestRevision": false, "revisionName": "podinfo-00001", "percent": 100}]),
        );
        assert_eq!(read_state(&live), ServiceState::new_revision_ready());
        assert_eq!(
            read_state(&json!({})),
            ServiceState {
                reconciled: true,
                ..Default::default()
            }
        );
    }

    #[test]
    fn release_removes_the_annotation_and_the_traffic_block() {
        assert_eq!(
            release_patch(),
            json!({"metadata": {"annotations": {"flagger.app/primary-revision": null}}, "spec": {"traffic": null}})
        );
    }
}
