//! What Serin reads from a Knative Service (`serving.knative.dev/v1`): its API resource, the
//! primary-revision annotation and the revision state; pure.
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

/// The Knative Serving API version Serin speaks.
pub const API_VERSION: &str = "serving.knative.dev/v1";
/// The kind of a Knative Service.
pub const KIND: &str = "Service";
/// The annotation naming the primary revision, as in Flagger.
pub const PRIMARY_REVISION_ANNOTATION: &str = "flagger.app/primary-revision";

/// The API resource of Knative Services.
pub fn resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("serving.knative.dev", "v1", KIND))
}

/// What the controller reads from a live Knative Service; pure data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceState {
    /// `status.latestCreatedRevisionName`.
    pub latest_created: Option<String>,
    /// `status.latestReadyRevisionName`.
    pub latest_ready: Option<String>,
    /// The `flagger.app/primary-revision` annotation.
    pub primary_revision: Option<String>,
    /// The `Ready` condition: its status (`True`, `False`, `Unknown`) and message.
    pub ready: Option<(String, String)>,
    /// Whether Knative has reconciled the current spec (`status.observedGeneration` is the
    /// object's generation); until then the status describes an older spec.
    pub reconciled: bool,
    /// Revisions named in `status.traffic` (those Knative routes to).
    pub serving: Vec<String>,
}

#[cfg(test)]
impl ServiceState {
    /// A reconciled, ready Service whose latest revision `podinfo-00002` is ready while the
    /// primary `podinfo-00001` still serves all traffic (tests).
    pub(crate) fn new_revision_ready() -> Self {
        Self {
            latest_created: Some("podinfo-00002".into()),
            latest_ready: Some("podinfo-00002".into()),
            primary_revision: Some("podinfo-00001".into()),
            ready: Some(("True".into(), String::new())),
            reconciled: true,
            serving: vec!["podinfo-00001".into()],
        }
    }
}

fn non_empty(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

/// Reads a Knative Service's state from its JSON.
pub fn read_state(live: &Value) -> ServiceState {
    let status = &live["status"];
    let generation = live["metadata"]["generation"].as_i64();
    let observed = status["observedGeneration"].as_i64();
    let ready = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("Unknown").to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        });
    ServiceState {
        latest_created: non_empty(&status["latestCreatedRevisionName"]),
        latest_ready: non_empty(&status["latestReadyRevisionName"]),
        primary_revision: non_empty(&live["metadata"]["annotations"][PRIMARY_REVISION_ANNOTATION]),
        ready,
        reconciled: match (generation, observed) {
            (Some(g), Some(o)) => o >= g,
            (None, _) => true,
            (Some(_), None) => false,
        },
        serving: status["traffic"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| non_empty(&t["revisionName"]))
            .collect(),
    }
}
