//! The read-modify-write cycle of routers that keep one routing object per canary (a
//! VirtualService, an HTTPRoute, an HTTPProxy, a TrafficSplit, an Ingress copy…); does API I/O.
//!
//! A provider describes its object with [`RoutingObject`] (where it lives, how its split is read
//! back, how the wanted object is built) and [`ObjectRouter`] implements [`TrafficRouter`] once
//! for all of them: read the live object, keep its split unless a new one is given, build the
//! object and apply it.
use async_trait::async_trait;
use kube::core::ApiResource;
use serde_json::{Map, Value, json};

use super::{Error, INITIAL, TrafficRouter};
use crate::api::Canary;
use crate::api::canary::TargetRef;
use crate::core::Routes;

/// What a provider's routing object is: where it lives, how to read and how to build it.
#[async_trait]
pub trait RoutingObject: Send + Sync {
    /// The object's API resource (apiVersion and kind).
    fn resource(&self) -> ApiResource;
    /// How a missing object is named in errors (default: its kind).
    fn label(&self) -> String {
        self.resource().kind
    }
    /// Its namespace: the Canary's (default), or `None` for a cluster-scoped object.
    fn namespace<'a>(&self, canary: &'a Canary) -> Option<&'a str> {
        canary.metadata.namespace.as_deref()
    }
    /// Its name (default: the apex Service's).
    fn name(&self, canary: &Canary) -> String {
        canary.spec.service_name()
    }
    /// Whether a split with no weight anywhere is refused before anything is written.
    fn refuses_zero(&self) -> bool {
        false
    }
    /// Reads the split back from the live object.
    fn read(&self, canary: &Canary, live: &Value) -> Result<Routes, Error>;
    /// Fails when the live object exists but cannot route yet (checked only when the split is
    /// read back, never when it is written).
    fn ready(&self, _live: &Value) -> Result<(), Error> {
        Ok(())
    }
    /// The object the Canary wants with `routes`, given the live one.
    async fn build(
        &self,
        client: &kube::Client,
        canary: &Canary,
        routes: Routes,
        live: Option<&Value>,
    ) -> Result<Value, Error>;
    /// Writes what the object depends on (Istio DestinationRules, Gloo Upstreams) before it, on
    /// reconcile.
    async fn prepare(&self, _client: &kube::Client, _canary: &Canary) -> Result<(), Error> {
        Ok(())
    }
    /// Restores what the router changed, on deletion (default: nothing to do).
    async fn finalize(&self, _client: &kube::Client, _canary: &Canary) -> Result<(), Error> {
        Ok(())
    }
}

/// The [`TrafficRouter`] of a provider with one [`RoutingObject`] per canary.
pub struct ObjectRouter<O> {
    client: kube::Client,
    object: O,
}

impl<O: RoutingObject> ObjectRouter<O> {
    /// A router writing `object` through `client`.
    pub fn new(client: kube::Client, object: O) -> Self {
        Self { client, object }
    }

    /// The live object; `None` when it does not exist yet.
    pub async fn live(&self, canary: &Canary) -> Result<Option<Value>, Error> {
        let ns = self.object.namespace(canary);
        let name = self.object.name(canary);
        super::get(&self.client, ns, &self.object.resource(), &name).await
    }

    async fn write(&self, canary: &Canary, routes: Option<Routes>) -> Result<(), Error> {
        let live = self.live(canary).await?;
        let routes = routes.unwrap_or_else(|| {
            live.as_ref()
                .and_then(|l| self.object.read(canary, l).ok())
                .unwrap_or(INITIAL)
        });
        let body = self
            .object
            .build(&self.client, canary, routes, live.as_ref())
            .await?;
        super::apply(&self.client, self.object.namespace(canary), &body).await
    }
}

#[async_trait]
impl<O: RoutingObject> TrafficRouter for ObjectRouter<O> {
    async fn reconcile(&self, canary: &Canary) -> Result<(), Error> {
        self.object.prepare(&self.client, canary).await?;
        self.write(canary, None).await
    }

    async fn set_routes(&self, canary: &Canary, routes: Routes) -> Result<(), Error> {
        if self.object.refuses_zero() {
            super::non_zero(routes, &self.object.resource().kind)?;
        }
        self.write(canary, Some(routes)).await
    }

    async fn routes(&self, canary: &Canary) -> Result<Routes, Error> {
        let live = self.live(canary).await?.ok_or_else(|| {
            let (label, name) = (self.object.label(), self.object.name(canary));
            Error::Missing(format!("{label} {name}"))
        })?;
        self.object.ready(&live)?;
        self.object.read(canary, &live)
    }

    async fn finalize(&self, canary: &Canary) -> Result<(), Error> {
        self.object.finalize(&self.client, canary).await
    }
}

/// The user's object a canary copy is cloned from (NGINX and Skipper Ingresses, APISIX routes):
/// the one `reference` names, in the Canary's namespace.
pub async fn original(
    client: &kube::Client,
    canary: &Canary,
    ar: &ApiResource,
    reference: Option<&TargetRef>,
    reference_field: &str,
) -> Result<Value, Error> {
    let name = reference
        .map(|r| r.name.clone())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Error::Invalid(format!("{reference_field} is empty")))?;
    super::get(client, canary.metadata.namespace.as_deref(), ar, &name)
        .await?
        .ok_or_else(|| Error::Missing(format!("{} {name}", ar.kind)))
}

/// The canary copy of the user's Ingress `original` (NGINX, Skipper): `name`, with `annotations`,
/// the original's labels and `spec`, owned by the Canary unless it existed before.
pub fn ingress_copy(
    canary: &Canary,
    name: &str,
    original: &Value,
    annotations: Map<String, Value>,
    spec: Value,
    live: Option<&Value>,
) -> Value {
    let owned = super::owned_by(canary, live);
    let mut meta = super::owned_metadata(canary, name, super::Meta::Bare, owned);
    meta["annotations"] = Value::Object(annotations);
    if let Some(labels) = original["metadata"]["labels"]
        .as_object()
        .filter(|l| !l.is_empty())
    {
        meta["labels"] = json!(labels);
    }
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec})
}
