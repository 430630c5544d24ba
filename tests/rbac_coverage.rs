//! Every ClusterRole permission is either used by an end-to-end suite or documented as needed by
//! a named feature (src/install/rbac.rs). Reads what the suites recorded (tests/common/rbac.rs)
//! while `cargo test` ran them, so it runs after them: `.ci/run` calls
//! `cargo test --test rbac_coverage -- --include-ignored` once `cargo test` is done.
mod common;

use serin::install::rbac::{
    CLUSTER_PERMISSIONS, Evidence, LEADER_ELECTION, LEADER_ELECTION_LEASE, LEADER_ELECTION_RENEW,
};
use std::collections::BTreeSet;

const SUITES: &[&str] = &[
    "controller_e2e",
    "router_e2e",
    "service_e2e",
    "knative_e2e",
    "webhooks_e2e",
    "metrics_e2e",
    "metrics_providers_e2e",
    "leader_election_e2e",
    "statefulset_e2e",
    "keda_e2e",
];

#[test]
#[ignore = "reads what the e2e suites recorded; run after them (.ci/run does)"]
fn every_cluster_role_permission_is_used_by_an_e2e_suite_or_documented() {
    let dir = common::rbac::usage_dir();
    let mut used = BTreeSet::new();
    let mut missing = Vec::new();
    for suite in SUITES {
        match std::fs::read_to_string(dir.join(format!("{suite}.txt"))) {
            Ok(text) => used.extend(text.lines().map(str::to_string)),
            Err(_) => missing.push(*suite),
        }
    }
    assert!(
        missing.is_empty(),
        "no RBAC usage recorded by {missing:?} in {}: run `cargo test --test <suite>` for each \
         first (cargo test runs them all)",
        dir.display()
    );
    let mut unused = Vec::new();
    let leader = [LEADER_ELECTION, LEADER_ELECTION_RENEW];
    for p in CLUSTER_PERMISSIONS
        .iter()
        .chain(leader.iter())
        .filter(|p| p.evidence == Evidence::E2e)
    {
        for resource in p.resources {
            for verb in p.verbs {
                let seen = |v: &str| used.contains(&format!("{v} {} {resource}", p.group));
                // A server-side apply is a patch; when it creates the object the API server
                // also authorizes it as create (the embedded cluster counts only the patch).
                let ok = seen(verb) || (*verb == "create" && seen("patch"));
                if !ok {
                    unused.push(format!("{verb} {}/{resource}", p.group));
                }
            }
        }
    }
    assert!(
        unused.is_empty(),
        "ClusterRole permissions marked Evidence::E2e that no e2e suite used (remove them, or \
         mark them Evidence::Documented with the feature that needs them):\n  {}",
        unused.join("\n  ")
    );
}

#[test]
fn the_role_names_the_lease_the_controller_uses() {
    assert_eq!(LEADER_ELECTION_LEASE, serin::controller::leader::LEASE_NAME);
}
