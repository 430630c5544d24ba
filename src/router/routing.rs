//! The read-modify-write cycle of routers that keep one routing object per canary (a
//! VirtualService, an HTTPRoute, an HTTPProxy, a TrafficSplit, an Ingress copy…); does API I/O.
//!
//! A provider describes its object with a [`RoutingObject`] (where it lives, its module's pure
//! reader and builder, and a [`Lifecycle`] for what it writes around it) and [`ObjectRouter`]
//! implements [`TrafficRouter`] once for all of them: read the live object, keep its split
//! unless a new one is given, build the object and apply it.
use async_trait::async_trait;
use kube::core::ApiResource;
use serde_json::{Map, Value, json};

use super::{Error, INITIAL, TrafficRouter};
use crate::api::Canary;
use crate::api::canary::TargetRef;
use crate::core::Routes;

/// Reads the split back from a live routing object.
pub type Read = Box<dyn Fn(&Canary, &Value) -> Result<Routes, Error> + Send + Sync>;

/// Builds the routing object a Canary wants: from the Canary, the split, the live object (if
/// any) and the user's object a copy is cloned from (`null` for objects that are not copies).
pub type Build =
    Box<dyn Fn(&Canary, Routes, Option<&Value>, &Value) -> Result<Value, Error> + Send + Sync>;

/// Where the user's object a copy is cloned from is named: the reference and its field name.
type CloneOf = (fn(&Canary) -> Option<&TargetRef>, &'static str);

/// What a router writes around its routing object, when that is more than the object itself.
#[async_trait]
pub trait Lifecycle: Send + Sync {
    /// Writes what the object depends on (Istio DestinationRules, Gloo Upstreams) before it,
    /// on reconcile.
    async fn prepare(&self, _client: &kube::Client, _canary: &Canary) -> Result<(), Error> {
        Ok(())
    }
    /// Restores what the router changed, on deletion.
    async fn finalize(&self, _client: &kube::Client, _canary: &Canary) -> Result<(), Error> {
        Ok(())
    }
}

/// The object alone: nothing to prepare, nothing to restore.
struct ObjectAlone;

impl Lifecycle for ObjectAlone {}

/// A provider's routing object: where it lives, how its split is read back and how the wanted
/// object is built (pure functions of the provider module), plus what it needs around it.
pub struct RoutingObject {
    resource: ApiResource,
    label: Option<&'static str>,
    cluster_scoped: bool,
    name: fn(&Canary) -> String,
    refuses_zero: bool,
    read: Read,
    build: Build,
    clone_of: Option<CloneOf>,
    ready: fn(&Value) -> Result<(), Error>,
    lifecycle: Box<dyn Lifecycle>,
}

fn apex_name(canary: &Canary) -> String {
    canary.spec.service_name()
}

fn always_ready(_: &Value) -> Result<(), Error> {
    Ok(())
}

impl RoutingObject {
    /// The object of `resource` named after the apex Service in the Canary's namespace.
    pub fn new(
        resource: ApiResource,
        read: impl Fn(&Canary, &Value) -> Result<Routes, Error> + Send + Sync + 'static,
        build: impl Fn(&Canary, Routes, Option<&Value>, &Value) -> Result<Value, Error>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Self {
            resource,
            label: None,
            cluster_scoped: false,
            name: apex_name,
            refuses_zero: false,
            read: Box::new(read),
            build: Box::new(build),
            clone_of: None,
            ready: always_ready,
            lifecycle: Box::new(ObjectAlone),
        }
    }

    /// A split with no weight anywhere is refused before anything is written.
    pub fn refusing_zero(mut self) -> Self {
        self.refuses_zero = true;
        self
    }

    /// The object is cluster-scoped (Kuma's TrafficRoute).
    pub fn cluster_scoped(mut self) -> Self {
        self.cluster_scoped = true;
        self
    }

    /// The object is a copy, named by `name`, of the user's object that `reference` (the
    /// Canary field `field`) names; errors call it `label`.
    pub fn copy_of(
        mut self,
        label: &'static str,
        name: fn(&Canary) -> String,
        reference: fn(&Canary) -> Option<&TargetRef>,
        field: &'static str,
    ) -> Self {
        self.label = Some(label);
        self.name = name;
        self.clone_of = Some((reference, field));
        self
    }

    /// The live object must pass `ready` before its split is read back (never when written).
    pub fn ready_when(mut self, ready: fn(&Value) -> Result<(), Error>) -> Self {
        self.ready = ready;
        self
    }

    /// The object is the canary copy of the user's Ingress (`spec.ingressRef`), named
    /// [`canary_ingress_name`] (NGINX, Skipper).
    pub fn copy_of_ingress(self) -> Self {
        self.copy_of(
            "ingress",
            canary_ingress_name,
            |c| c.spec.ingress_ref.as_ref(),
            "ingressRef",
        )
    }

    /// What the router writes around the object.
    pub fn with(mut self, lifecycle: impl Lifecycle + 'static) -> Self {
        self.lifecycle = Box::new(lifecycle);
        self
    }

    fn namespace<'a>(&self, canary: &'a Canary) -> Option<&'a str> {
        match self.cluster_scoped {
            true => None,
            false => canary.metadata.namespace.as_deref(),
        }
    }
}

/// The [`TrafficRouter`] of a provider with one [`RoutingObject`] per canary.
pub struct ObjectRouter {
    client: kube::Client,
    object: RoutingObject,
}

impl ObjectRouter {
    /// A router writing `object` through `client`.
    pub fn new(client: kube::Client, object: RoutingObject) -> Self {
        Self { client, object }
    }

    /// The live object; `None` when it does not exist yet.
    pub async fn live(&self, canary: &Canary) -> Result<Option<Value>, Error> {
        let ns = self.object.namespace(canary);
        let name = (self.object.name)(canary);
        super::get(&self.client, ns, &self.object.resource, &name).await
    }

    async fn write(&self, canary: &Canary, routes: Option<Routes>) -> Result<(), Error> {
        let o = &self.object;
        let live = self.live(canary).await?;
        let routes = routes.unwrap_or_else(|| {
            live.as_ref()
                .and_then(|l| (o.read)(canary, l).ok())
                .unwrap_or(INITIAL)
        });
        let source = match o.clone_of {
            Some((reference, field)) => {
                original(&self.client, canary, &o.resource, reference(canary), field).await?
            }
            None => Value::Null,
        };
        let body = (o.build)(canary, routes, live.as_ref(), &source)?;
        super::apply(&self.client, o.namespace(canary), &body).await
    }
}

#[async_trait]
impl TrafficRouter for ObjectRouter {
    async fn reconcile(&self, canary: &Canary) -> Result<(), Error> {
        self.object.lifecycle.prepare(&self.client, canary).await?;
        self.write(canary, None).await
    }

    async fn set_routes(&self, canary: &Canary, routes: Routes) -> Result<(), Error> {
        if self.object.refuses_zero {
            super::non_zero(routes, &self.object.resource.kind)?;
        }
        self.write(canary, Some(routes)).await
    }

    async fn routes(&self, canary: &Canary) -> Result<Routes, Error> {
        let o = &self.object;
        let live = self.live(canary).await?.ok_or_else(|| {
            let label = o.label.unwrap_or(&o.resource.kind);
            Error::Missing(format!("{label} {}", (o.name)(canary)))
        })?;
        (o.ready)(&live)?;
        (o.read)(canary, &live)
    }

    async fn finalize(&self, canary: &Canary) -> Result<(), Error> {
        self.object.lifecycle.finalize(&self.client, canary).await
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

/// The name of the canary Ingress (NGINX, Skipper): the user's Ingress name with `-canary`.
pub fn canary_ingress_name(canary: &Canary) -> String {
    let base = canary
        .spec
        .ingress_ref
        .as_ref()
        .map(|r| r.name.clone())
        .unwrap_or_default();
    format!("{base}-canary")
}

/// The canary copy of the user's Ingress `original` (NGINX, Skipper): [`canary_ingress_name`],
/// with `annotations`, the original's labels and `spec`, owned by the Canary unless it existed
/// before.
pub fn ingress_copy(
    canary: &Canary,
    original: &Value,
    annotations: Map<String, Value>,
    spec: Value,
    live: Option<&Value>,
) -> Value {
    let owned = super::owned_by(canary, live);
    let name = canary_ingress_name(canary);
    let mut meta = super::owned_metadata(canary, &name, super::Meta::Bare, owned);
    meta["annotations"] = Value::Object(annotations);
    if let Some(labels) = original["metadata"]["labels"]
        .as_object()
        .filter(|l| !l.is_empty())
    {
        meta["labels"] = json!(labels);
    }
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec})
}
