//! The `kubernetes` provider: only the three Services, no traffic shifting (blue/green); no I/O.
use async_trait::async_trait;

use super::{Error, TrafficRouter};
use crate::api::Canary;
use crate::core::Routes;

/// A router that shifts nothing: the apex Service always selects the primary, and promotion
/// switches versions by copying the canary's template into the primary.
#[derive(Clone, Copy, Debug, Default)]
pub struct KubernetesRouter;

#[async_trait]
impl TrafficRouter for KubernetesRouter {
    async fn reconcile(&self, _canary: &Canary) -> Result<(), Error> {
        Ok(())
    }
    async fn set_routes(&self, _canary: &Canary, _routes: Routes) -> Result<(), Error> {
        Ok(())
    }
    async fn routes(&self, _canary: &Canary) -> Result<Routes, Error> {
        Ok(Routes::split(100, 0))
    }
    async fn finalize(&self, _canary: &Canary) -> Result<(), Error> {
        Ok(())
    }
}
