//! Level-triggered change detection: a stable fingerprint of a pod template plus its tracked
//! configs, and the inverse of the primary's template rewrite; pure.
//!
//! Flagger hashes a go-spew dump of the Go struct, which changes whenever `k8s.io/api` adds a field
//! (every upgrade restarts every canary). This fingerprint is sha256 over canonical JSON instead:
//! keys sorted, no whitespace, absent/null/empty values dropped, so it depends only on what the
//! template says, not on field order, library version or defaulting of empty collections.
use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::controller::builders::{TOOLKIT_MARKER, primary_value, rewrite_self_selectors};
use crate::controller::configs::{ConfigRenames, rename_refs};
use crate::controller::workload::{FLAGGER_ID_ANNOTATION, SCALE_TO_ZERO_SELECTOR};

/// Prefix of Serin fingerprints; anything else in `lastAppliedSpec` is a Flagger hash.
pub const FINGERPRINT_PREFIX: &str = "v1:";

/// Whether `s` is a Serin fingerprint (as opposed to a Flagger hash found on adoption).
pub fn is_serin_fingerprint(s: &str) -> bool {
    s.starts_with(FINGERPRINT_PREFIX)
}

/// Drops nulls, empty objects and empty arrays, bottom-up: the API server and our builders may
/// spell "nothing" either way.
fn prune(v: &mut Value) -> bool {
    match v {
        Value::Null => false,
        Value::Object(map) => {
            map.retain(|_, child| prune(child));
            !map.is_empty()
        }
        Value::Array(items) => {
            items.retain_mut(prune);
            !items.is_empty()
        }
        _ => true,
    }
}

/// Writes `v` as canonical JSON: object keys in byte order, no whitespace.
fn write_canonical(out: &mut String, v: &Value) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, child)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(out, child);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, child) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, child);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The template with everything that legitimately differs between target and primary, or that
/// Serin itself writes, removed: toolkit and `flagger-id` annotations, toolkit labels, the
/// DaemonSet scale-to-zero node selector.
fn normalized(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = template.clone();
    if let Some(meta) = t.metadata.as_mut() {
        if let Some(a) = meta.annotations.as_mut() {
            a.retain(|k, _| !k.contains(TOOLKIT_MARKER) && k != FLAGGER_ID_ANNOTATION);
        }
        if let Some(l) = meta.labels.as_mut() {
            l.retain(|k, _| !k.contains(TOOLKIT_MARKER));
        }
    }
    if let Some(ns) = t.spec.as_mut().and_then(|s| s.node_selector.as_mut()) {
        ns.remove(SCALE_TO_ZERO_SELECTOR);
    }
    t
}

/// The fingerprint of a target revision: `v1:` + hex of the first 16 bytes of sha256 over the
/// canonical JSON of `{"configs": configs, "template": template}` (template normalised as
/// described in the module docs). `configs` maps status keys (`configmap/<name>`) to checksums.
pub fn template_fingerprint(
    template: &PodTemplateSpec,
    configs: &BTreeMap<String, String>,
) -> String {
    // Serialising k8s-openapi types and string maps to a Value cannot fail (no non-string keys,
    // no custom serialisers that error); Null is a safe, still deterministic, fallback.
    let mut doc = serde_json::json!({
        "template": serde_json::to_value(normalized(template)).unwrap_or(Value::Null),
        "configs": serde_json::to_value(configs).unwrap_or(Value::Null),
    });
    prune(&mut doc);
    let mut canonical = String::new();
    write_canonical(&mut canonical, &doc);
    let digest = Sha256::digest(canonical.as_bytes());
    digest
        .iter()
        .take(16)
        .fold(String::from(FINGERPRINT_PREFIX), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Undoes what [`crate::controller::builders::primary_template`] did to a target template: the
/// selector label back to `<value>`, config references back to their original names, the
/// `flagger-id` annotation removed, self-referencing anti-affinity and spread selectors back to
/// `<value>`. Then `template_fingerprint(target) == template_fingerprint(unprimary(primary))`
/// exactly when the primary runs the target's revision.
///
/// Limitation: a target that itself refers to `<value>-primary` in an anti-affinity selector, or
/// mounts a config literally named like a renamed copy, is not restored exactly; such a primary
/// then looks different from the target (a spurious run, never a missed one).
pub fn unprimary_template(
    primary_template: &PodTemplateSpec,
    label: &(String, String),
    renames: &ConfigRenames,
) -> PodTemplateSpec {
    let (key, value) = label;
    let mut t = primary_template.clone();
    if let Some(meta) = t.metadata.as_mut() {
        if let Some(labels) = meta.labels.as_mut()
            && labels.contains_key(key)
        {
            labels.insert(key.clone(), value.clone());
        }
        if let Some(a) = meta.annotations.as_mut() {
            a.remove(FLAGGER_ID_ANNOTATION);
        }
    }
    if let Some(spec) = t.spec.as_mut() {
        let inverse: ConfigRenames = renames
            .iter()
            .map(|((kind, original), renamed)| ((*kind, renamed.clone()), original.clone()))
            .collect();
        rename_refs(spec, &inverse);
        rewrite_self_selectors(spec, key, &primary_value(value), value);
    }
    t
}
