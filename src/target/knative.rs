//! Knative Service targets (`serving.knative.dev/v1`): the canary is the latest created revision,
//! the primary the one named by `flagger.app/primary-revision`; observation, readiness and
//! fingerprint of revisions; pure, no I/O.
//!
//! Knative builds and scales revisions itself and is its own router, so nothing is generated but
//! the name of the revision to make primary.
use std::collections::BTreeMap;

use super::{Observation, Snapshot};
use crate::api::TargetKind;
use crate::core::fingerprint::revision_fingerprint;
use crate::core::knative::{self, ServiceState};
use crate::core::plan::{Generated, PrimaryObs, TargetObs, TargetProblem};
use crate::core::readiness::{self, Readiness};

/// Readiness of the latest created revision (the canary), by `core::readiness`.
pub fn readiness(state: &ServiceState) -> Readiness {
    readiness::knative_readiness(state)
}

/// Readiness of the primary revision: Knative serves it.
pub fn primary_readiness(state: &ServiceState, revision: &str) -> Readiness {
    readiness::knative_primary_readiness(state, revision)
}

/// The fingerprint of a revision: its name, since Knative names every template change anew.
pub fn fingerprint(revision: &str) -> String {
    revision_fingerprint(revision)
}

/// A Knative Service target: the canary is the latest created revision, the primary the one
/// named by `flagger.app/primary-revision`; there are no generated objects.
pub fn observe(
    snapshot: &dyn Snapshot,
    name: &str,
    ns: &str,
) -> Result<Observation, TargetProblem> {
    if !snapshot.knative_synced() {
        return Err(TargetProblem::Missing(format!(
            "Knative Service {name}.{ns}: Knative Services are not listed yet (is Knative Serving installed?)"
        )));
    }
    let live = snapshot
        .knative_service(ns, name)
        .ok_or_else(|| TargetProblem::Missing(format!("Knative Service {name}.{ns} not found")))?;
    let state = knative::read_state(&live);
    let latest = state.latest_created.clone().ok_or_else(|| {
        TargetProblem::Missing(format!("Knative Service {name}.{ns} has no revision yet"))
    })?;
    let target = TargetObs {
        kind: TargetKind::KnativeService,
        name: name.to_string(),
        selector: (String::new(), String::new()),
        fingerprint: fingerprint(&latest),
        tracked_configs: BTreeMap::new(),
        replicas: 1,
        scale_up_replicas: 1,
        readiness: readiness(&state),
        pods: None,
    };
    let primary = state.primary_revision.as_ref().map(|rev| PrimaryObs {
        fingerprint: fingerprint(rev),
        readiness: primary_readiness(&state, rev),
        replicas: 1,
    });
    let generated = Generated {
        primary_revision: Some(latest),
        ..Default::default()
    };
    Ok(Observation {
        target,
        primary,
        generated,
    })
}
