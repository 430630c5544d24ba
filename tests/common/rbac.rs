//! Checks every request the controller made (told apart by its User-Agent) against the RBAC
//! rules in deploy/base/rbac.yaml, and records which permissions the suites used
//! (for tests/rbac_coverage.rs). Reads files; no network.
#![allow(dead_code)]

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::Value;
use serin::cluster::RequestCount;
use serin::install::authz::{self, Grant, Request};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The User-Agent prefix of `serin controller` (and of the in-process harness's controller).
pub const CONTROLLER_UA: &str = "serin-controller/";

/// The grants of the bundle: the ClusterRole everywhere, the leader-election Role in its
/// namespace, and what every authenticated user may do.
pub fn bundle_grants() -> Vec<Grant> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/base/rbac.yaml");
    let text = std::fs::read_to_string(&path).expect("deploy/base/rbac.yaml");
    let mut grants = vec![authz::default_authenticated()];
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc).expect("YAML document");
        let rules = || -> Vec<PolicyRule> {
            serde_json::from_value(v["rules"].clone()).expect("policy rules")
        };
        match v["kind"].as_str() {
            Some("ClusterRole") => grants.push(Grant {
                namespace: None,
                rules: rules(),
            }),
            Some("Role") => grants.push(Grant {
                namespace: v["metadata"]["namespace"].as_str().map(str::to_string),
                rules: rules(),
            }),
            _ => {}
        }
    }
    grants
}

/// The authorizer's view of a counted request.
pub fn request(c: &RequestCount) -> Request {
    let k = &c.key;
    if k.resource.is_empty() {
        Request::NonResource {
            verb: k.verb.clone(),
            path: k.name.clone(),
        }
    } else {
        Request::Resource {
            verb: k.verb.clone(),
            group: k.group.clone(),
            resource: k.resource.clone(),
            namespace: k.namespace.clone(),
            name: k.name.clone(),
        }
    }
}

/// The test binary's name without cargo's hash (`router_e2e`).
pub fn suite() -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    let stem = exe
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    match stem.rsplit_once('-') {
        Some((name, _hash)) => name.to_string(),
        None => stem,
    }
}

/// Where the suites record the permissions they used.
pub fn usage_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rbac-usage")
}

/// Checks the controller's requests; returns the denied ones (one line each) and records the
/// `verb group resource` triples used.
pub fn denied_controller_requests(requests: &[RequestCount], extra: &[Grant]) -> Vec<String> {
    let mut grants = bundle_grants();
    grants.extend(extra.iter().cloned());
    let mut denied = Vec::new();
    let mut used = std::collections::BTreeSet::new();
    for c in requests
        .iter()
        .filter(|c| c.key.user_agent.starts_with(CONTROLLER_UA))
    {
        let req = request(c);
        if !authz::allows(&grants, &req) {
            denied.push(format!(
                "{} {}/{} ns={:?} name={:?} ({}x)",
                c.key.verb, c.key.group, c.key.resource, c.key.namespace, c.key.name, c.count
            ));
        }
        if !c.key.resource.is_empty() {
            used.insert(format!("{} {} {}", c.key.verb, c.key.group, c.key.resource));
        }
    }
    let dir = usage_dir();
    if std::fs::create_dir_all(&dir).is_ok()
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{}.txt", suite())))
    {
        for line in used {
            let _ = writeln!(f, "{line}");
        }
    }
    denied
}

/// Panics with the list of denied requests, unless the thread is already panicking. `extra` are
/// grants the docs tell users to add themselves (e.g. the external metrics they query).
pub fn assert_controller_authorized(requests: &[RequestCount], extra: &[Grant]) {
    if std::thread::panicking() {
        return;
    }
    let denied = denied_controller_requests(requests, extra);
    assert!(
        denied.is_empty(),
        "the controller made requests deploy/'s RBAC does not allow (add them to \
         CLUSTER_PERMISSIONS in src/install/rbac.rs and run `{}`):\n  {}",
        serin::install::REGENERATE,
        denied.join("\n  ")
    );
}
