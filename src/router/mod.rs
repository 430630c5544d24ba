//! Traffic routers: one module per provider behind [`TrafficRouter`]; routers do API I/O.
use async_trait::async_trait;
use std::sync::Arc;

use crate::api::{Canary, Provider};
use crate::controller::plan::Routes;

pub mod kubernetes;

/// Errors from routers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The provider has no router in this build.
    #[error("provider {0} is not supported by this version of Serin yet")]
    Unsupported(Provider),
    /// A Kubernetes API call failed.
    #[error("router API call failed: {0}")]
    Api(#[from] kube::Error),
    /// The routing object is not usable yet (e.g. a Gateway has not accepted the route).
    #[error("routes not ready: {0}")]
    NotReady(String),
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

/// Returns the router for a provider, or a clear error for providers not built yet.
pub fn for_provider(
    provider: Provider,
    _client: &kube::Client,
    _config: &RouterConfig,
) -> Result<Arc<dyn TrafficRouter>, Error> {
    match provider {
        Provider::Kubernetes => Ok(Arc::new(kubernetes::KubernetesRouter)),
        other => Err(Error::Unsupported(other)),
    }
}
