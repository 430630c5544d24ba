//! Traffic routers: one module per provider behind [`TrafficRouter`]; routers do API I/O.
//!
//! Each provider module has two layers: pure builders that compute the routing object a Canary
//! wants (as JSON, exactly as Flagger writes it) and read the split back from a live object, and
//! a thin async layer that reads the live object and writes it back with server-side apply under
//! the field manager `serin`. Apply only sends the fields Serin owns, so fields and keys added by
//! users or GitOps tools stay where they are; where a provider keeps routes in an atomic list
//! (HTTPRoute `rules`, VirtualService `http`), the routes that do not point at the canary's
//! Services are carried over from the live object so that users' extra routes survive.
use async_trait::async_trait;
use kube::api::{Api, DeleteParams, DynamicObject, Patch};
use kube::core::ApiResource;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::api::{Canary, Provider};
use crate::core::Routes;
use crate::core::fields::{
    HELM_DRIFT_DETECTION_ANNOTATION, KUSTOMIZE_RECONCILE_ANNOTATION, TOOLKIT_MARKER, apply_params,
    owner_reference,
};

pub mod affinity;
pub mod apisix;
pub mod appmesh;
pub mod contour;
pub mod gatewayapi;
pub mod gloo;
pub mod istio;
pub mod knative;
pub mod kubernetes;
pub mod kuma;
pub mod nginx;
pub mod routing;
pub mod skipper;
pub mod smi;
pub mod traefik;

/// Errors from routers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("router API call failed: {0}")]
    Api(#[from] kube::Error),
    /// The routing object is not usable yet (e.g. a Gateway has not accepted the route).
    #[error("routes not ready: {0}")]
    NotReady(String),
    /// An object the router needs (an `ingressRef`, a routing object) does not exist.
    #[error("{0} not found")]
    Missing(String),
    /// The Canary asks for something the provider cannot express.
    #[error("invalid routing spec: {0}")]
    Invalid(String),
    /// A live object does not have the shape the router expects.
    #[error("cannot read {0}")]
    Malformed(String),
}

/// What every traffic provider implements (Flagger's `router.Interface`).
#[async_trait]
pub trait TrafficRouter: Send + Sync {
    /// Creates or updates the routing objects without touching weights.
    async fn reconcile(&self, canary: &Canary) -> Result<(), Error>;
    /// Sets the traffic split.
    async fn set_routes(&self, canary: &Canary, routes: Routes) -> Result<(), Error>;
    /// Reads the traffic split back from the live objects.
    async fn routes(&self, canary: &Canary) -> Result<Routes, Error>;
    /// Restores what the router changed, on deletion.
    async fn finalize(&self, canary: &Canary) -> Result<(), Error>;
}

/// Controller settings the routers read (`--ingress-annotations-prefix`, `--ingress-class`, …).
#[derive(Clone, Debug, Default)]
pub struct RouterConfig {
    /// Annotation prefix of the NGINX ingress controller (default `nginx.ingress.kubernetes.io`).
    pub ingress_annotations_prefix: Option<String>,
    /// Ingress class for Contour.
    pub ingress_class: Option<String>,
}

/// Returns the router for a provider (every provider of Flagger has one).
pub fn for_provider(
    provider: Provider,
    client: &kube::Client,
    config: &RouterConfig,
) -> Result<Arc<dyn TrafficRouter>, Error> {
    let client = client.clone();
    match provider {
        Provider::Kubernetes => Ok(Arc::new(kubernetes::KubernetesRouter)),
        Provider::GatewayApiV1 => {
            routed(client, gatewayapi::routing_object(gatewayapi::Version::V1))
        }
        Provider::GatewayApiV1beta1 => routed(
            client,
            gatewayapi::routing_object(gatewayapi::Version::V1beta1),
        ),
        Provider::Istio => routed(client, istio::routing_object()),
        Provider::Nginx => routed(
            client,
            nginx::routing_object(
                config
                    .ingress_annotations_prefix
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| nginx::DEFAULT_PREFIX.to_string()),
            ),
        ),
        Provider::Linkerd => routed(client, smi::routing_object(smi::Flavour::Linkerd)),
        Provider::Osm => routed(
            client,
            smi::routing_object(smi::Flavour::Smi {
                version: 2,
                istio: false,
            }),
        ),
        Provider::Smi { version, istio } => routed(
            client,
            smi::routing_object(smi::Flavour::Smi { version, istio }),
        ),
        Provider::Contour => routed(
            client,
            contour::routing_object(config.ingress_class.clone()),
        ),
        Provider::Apisix => routed(client, apisix::routing_object()),
        Provider::Kuma => routed(client, kuma::routing_object()),
        Provider::Skipper => routed(client, skipper::routing_object()),
        Provider::Traefik => routed(client, traefik::routing_object()),
        Provider::Gloo => routed(client, gloo::routing_object()),
        Provider::AppMesh => Ok(Arc::new(appmesh::AppMeshRouter::new(
            client,
            appmesh::Version::V1beta1,
        ))),
        Provider::AppMeshV1beta2 => Ok(Arc::new(appmesh::AppMeshRouter::new(
            client,
            appmesh::Version::V1beta2,
        ))),
        Provider::Knative => Ok(Arc::new(knative::KnativeRouter::new(client))),
    }
}

/// The router of a provider with one routing object per canary.
fn routed(
    client: kube::Client,
    object: routing::RoutingObject,
) -> Result<Arc<dyn TrafficRouter>, Error> {
    Ok(Arc::new(routing::ObjectRouter::new(client, object)))
}

// ---- Pure helpers shared by the providers ---------------------------------------------------

/// `<svc>`, `<svc>-primary`, `<svc>-canary`.
pub fn service_names(canary: &Canary) -> (String, String, String) {
    let apex = canary.spec.service_name();
    (
        apex.clone(),
        format!("{apex}-primary"),
        format!("{apex}-canary"),
    )
}

/// The main port of the canary's Services.
pub fn service_port(canary: &Canary) -> i32 {
    canary.spec.service.as_ref().map(|s| s.port).unwrap_or(0)
}

/// The URI prefix a router that routes by prefix only uses (Contour, App Mesh):
/// `service.match[0].uri.prefix`, default `/`.
pub fn uri_prefix(canary: &Canary) -> String {
    canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.match_.as_ref())
        .and_then(|m| m.first())
        .and_then(|m| m.uri.as_ref())
        .and_then(|u| u.prefix.clone())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".into())
}

/// Whether the analysis is A/B testing (it has `match` conditions).
pub fn is_ab(canary: &Canary) -> bool {
    !canary.spec.ab_matches().is_empty()
}

/// Annotations Flagger puts on router-created objects so Flux leaves them alone.
pub fn toolkit_annotations() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            KUSTOMIZE_RECONCILE_ANNOTATION.to_string(),
            "disabled".to_string(),
        ),
        (
            HELM_DRIFT_DETECTION_ANNOTATION.to_string(),
            "disabled".to_string(),
        ),
    ])
}

/// What metadata a router object carries besides its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Meta {
    /// `service.apex` labels and annotations plus Flagger's Flux opt-out annotations.
    Apex,
    /// Only Flagger's Flux opt-out annotations.
    Toolkit,
    /// Nothing (e.g. Istio DestinationRules).
    Bare,
}

/// Whether the live object is controlled by this Canary (or does not exist yet, so we create it).
pub fn owned_by(canary: &Canary, live: Option<&Value>) -> bool {
    let Some(live) = live else { return true };
    let uid = canary.metadata.uid.clone().unwrap_or_default();
    live["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == json!(uid)))
}

/// Metadata of a router object: name, namespace, and a controller owner reference to the
/// Canary when `owned` (objects that existed before the Canary are never adopted, so deleting
/// the Canary does not garbage-collect them).
pub fn owned_metadata(canary: &Canary, name: &str, meta: Meta, owned: bool) -> Value {
    let mut labels = BTreeMap::new();
    let mut annotations = BTreeMap::new();
    if meta == Meta::Apex
        && let Some(m) = canary.spec.service.as_ref().and_then(|s| s.apex.as_ref())
    {
        labels.extend(m.labels.clone().unwrap_or_default());
        annotations.extend(
            m.annotations
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| !k.contains(TOOLKIT_MARKER)),
        );
    }
    if meta != Meta::Bare {
        annotations.extend(toolkit_annotations());
    }
    let mut out = json!({
        "name": name,
        "namespace": canary.metadata.namespace.clone().unwrap_or_default(),
    });
    if owned {
        out["ownerReferences"] = json!([owner_reference(canary)]);
    }
    if !annotations.is_empty() {
        out["annotations"] = json!(annotations);
    }
    if !labels.is_empty() {
        out["labels"] = json!(labels);
    }
    out
}

/// A JSON object from pairs, leaving out nulls (so applied bodies carry only owned fields).
pub fn object(pairs: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.to_string(), v))
            .collect::<Map<String, Value>>(),
    )
}

/// A list as JSON, or null when it is empty (so that [`object`] leaves the field out).
pub fn list_or_null<T: serde::Serialize>(items: &[T]) -> Value {
    if items.is_empty() {
        Value::Null
    } else {
        json!(items)
    }
}

/// Items of the live list at `pointer` that `ours` does not claim, in their live order.
pub fn foreign_items(
    live: Option<&Value>,
    pointer: &str,
    ours: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    live.and_then(|l| l.pointer(pointer))
        .and_then(Value::as_array)
        .map(|items| items.iter().filter(|i| !ours(i)).cloned().collect())
        .unwrap_or_default()
}

/// A weight from JSON that may be an integer, a float or a quantity string ("50", "500m").
pub fn weight_of(v: Option<&Value>) -> i32 {
    match v {
        Some(Value::Number(n)) => n.as_f64().map(|f| f.round() as i32).unwrap_or(0),
        Some(Value::String(s)) => {
            let s = s.trim();
            if let Some(milli) = s.strip_suffix('m') {
                milli
                    .parse::<f64>()
                    .map(|f| (f / 1000.0).round() as i32)
                    .unwrap_or(0)
            } else {
                s.parse::<f64>().map(|f| f.round() as i32).unwrap_or(0)
            }
        }
        _ => 0,
    }
}

/// The split of objects that weigh the primary only: it has `weight` (read by [`weight_of`];
/// none is 0) and the canary has the rest.
pub fn primary_share(weight: Option<&Value>) -> Routes {
    let primary = weight_of(weight);
    Routes {
        primary,
        canary: 100 - primary,
        mirrored: false,
    }
}

/// Flagger's rule that a split with no weight anywhere is not a split.
pub fn non_zero(routes: Routes, what: &str) -> Result<Routes, Error> {
    if routes.primary == 0 && routes.canary == 0 {
        return Err(Error::Malformed(format!(
            "{what}: neither the primary nor the canary has a weight"
        )));
    }
    Ok(routes)
}

/// The split a new routing object starts with.
pub const INITIAL: Routes = Routes::split(100, 0);

// ---- Thin I/O layer ------------------------------------------------------------------------

/// The API resource of a kind.
pub fn resource(api_version: &str, kind: &str) -> ApiResource {
    crate::core::fields::api_resource(api_version, kind)
}

fn dyn_api(client: &kube::Client, ns: Option<&str>, ar: &ApiResource) -> Api<DynamicObject> {
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    }
}

/// Reads an object as JSON; `None` when it does not exist.
pub async fn get(
    client: &kube::Client,
    ns: Option<&str>,
    ar: &ApiResource,
    name: &str,
) -> Result<Option<Value>, Error> {
    let obj = dyn_api(client, ns, ar).get_opt(name).await?;
    obj.map(|o| serde_json::to_value(o).map_err(|e| Error::Malformed(format!("{name}: {e}"))))
        .transpose()
}

/// The live object `name` of `kind` in the Canary's namespace.
pub async fn get_for(
    client: &kube::Client,
    canary: &Canary,
    api_version: &str,
    kind: &str,
    name: &str,
) -> Result<Option<Value>, Error> {
    let ar = resource(api_version, kind);
    get(client, canary.metadata.namespace.as_deref(), &ar, name).await
}

/// Server-side applies `body` (which carries apiVersion, kind and metadata.name) as `serin`.
pub async fn apply(client: &kube::Client, ns: Option<&str>, body: &Value) -> Result<(), Error> {
    let api_version = body["apiVersion"].as_str().unwrap_or_default();
    let kind = body["kind"].as_str().unwrap_or_default();
    let name = body["metadata"]["name"].as_str().unwrap_or_default();
    let ar = resource(api_version, kind);
    dyn_api(client, ns, &ar)
        .patch(name, &apply_params(), &Patch::Apply(body))
        .await?;
    Ok(())
}

/// Deletes an object; a missing object is not an error.
pub async fn delete(
    client: &kube::Client,
    ns: Option<&str>,
    ar: &ApiResource,
    name: &str,
) -> Result<(), Error> {
    match dyn_api(client, ns, ar)
        .delete(name, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
pub(crate) mod testing;
