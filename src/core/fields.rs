//! Who Serin is on the objects it writes: its field manager, its owner references, and the Flux
//! keys and annotations it handles; pure.
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::PatchParams;
use kube::core::{ApiResource, GroupVersionKind};

use crate::api::Canary;

/// Field manager for everything Serin writes with server-side apply.
pub const FIELD_MANAGER: &str = "serin";

/// How Serin server-side applies: as [`FIELD_MANAGER`], forcing conflicts (it owns what it
/// writes). The one set of apply parameters of the routers, the controller and the demo.
pub fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// The API resource of `kind` in `api_version` (`group/version`, or `version` for the core
/// group), for the dynamic API of an object known as JSON.
pub fn api_resource(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

/// Marker of Flux toolkit keys; Flagger never copies them, so Flux does not adopt or prune copies.
pub const TOOLKIT_MARKER: &str = "toolkit.fluxcd.io";
/// Annotation telling Flux's kustomize-controller to leave an object alone.
pub const KUSTOMIZE_RECONCILE_ANNOTATION: &str = "kustomize.toolkit.fluxcd.io/reconcile";
/// Annotation telling Flux's helm-controller not to revert drift on an object.
pub const HELM_DRIFT_DETECTION_ANNOTATION: &str = "helm.toolkit.fluxcd.io/driftDetection";

/// The controller owner reference to a Canary, so that deleting it garbage-collects what it owns.
pub fn owner_reference(canary: &Canary) -> OwnerReference {
    OwnerReference {
        api_version: "flagger.app/v1beta1".into(),
        kind: "Canary".into(),
        name: canary.metadata.name.clone().unwrap_or_default(),
        uid: canary.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A copy of `map` without Flux toolkit keys.
pub fn drop_toolkit_keys(map: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    map.iter()
        .filter(|(k, _)| !k.contains(TOOLKIT_MARKER))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
