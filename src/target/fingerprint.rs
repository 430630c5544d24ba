//! Level-triggered change detection: a stable fingerprint of a pod template plus its tracked
//! configs, or of a Service target's spec; pure. The kinds' entry points (and the inverse of the
//! primary's template rewrite) live in their modules, `workload` and `service`.
//!
//! Flagger hashes a go-spew dump of the Go struct, which changes whenever `k8s.io/api` adds a field
//! (every upgrade restarts every canary). This fingerprint is sha256 over canonical JSON instead:
//! keys sorted, no whitespace, absent/null/empty values dropped, so it depends only on what the
//! template says, not on field order, library version or defaulting of empty collections.
use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::{PodTemplateSpec, ServiceSpec};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use crate::core::fingerprint::{
    FINGERPRINT_PREFIX, is_serin_fingerprint, revision_fingerprint,
};
use crate::core::workload::{FLAGGER_ID_ANNOTATION, SCALE_TO_ZERO_SELECTOR};
use crate::target::builders::TOOLKIT_MARKER;

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
    let doc = serde_json::json!({
        "template": serde_json::to_value(normalized(template)).unwrap_or(Value::Null),
        "configs": serde_json::to_value(configs).unwrap_or(Value::Null),
    });
    digest_of(doc)
}

/// The fingerprint of a Kubernetes Service target: `v1:` + hex of the first 16 bytes of sha256
/// over the canonical JSON of `{"service": spec}`. The caller passes the spec as Serin copies
/// it (see [`crate::target::service::copyable_spec`]), so the target and its
/// `-primary` copy fingerprint alike exactly when promotion would write nothing new.
pub fn service_fingerprint(spec: &ServiceSpec) -> String {
    digest_of(serde_json::json!({
        "service": serde_json::to_value(spec).unwrap_or(Value::Null),
    }))
}

fn digest_of(mut doc: Value) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::builders::fixtures::{map, template};
    use k8s_openapi::api::core::v1::EnvVar;

    fn configs() -> BTreeMap<String, String> {
        map(&[
            ("configmap/podinfo-config-vol", "0123456789abcdef"),
            ("secret/podinfo-secret-env", "fedcba9876543210"),
        ])
    }

    fn sha_prefix(canonical: &str) -> String {
        let d = Sha256::digest(canonical.as_bytes());
        let hex: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("v1:{hex}")
    }

    #[test]
    fn fingerprint_hashes_canonical_json_of_template_and_configs() {
        // Pins the format: sorted keys, no whitespace, empty values dropped, configs beside the
        // template. Changing any of this would restart every canary on upgrade.
        let t: PodTemplateSpec = serde_json::from_str(
            r#"{"metadata":{"labels":{"app":"a"},"annotations":{}},
                "spec":{"containers":[{"name":"a","image":"b","env":[]}]}}"#,
        )
        .unwrap();
        let fp = template_fingerprint(&t, &map(&[("configmap/c", "01")]));
        assert_eq!(
            fp,
            sha_prefix(
                r#"{"configs":{"configmap/c":"01"},"template":{"metadata":{"labels":{"app":"a"}},"spec":{"containers":[{"image":"b","name":"a"}]}}}"#
            )
        );
        assert_eq!(
            template_fingerprint(&PodTemplateSpec::default(), &BTreeMap::new()),
            sha_prefix("{}")
        );
        assert_eq!(fp.len(), 3 + 32);
    }

    #[test]
    fn fingerprint_ignores_field_order_and_empty_collections() {
        let a: PodTemplateSpec = serde_yaml_ng::from_str(
            "metadata: {labels: {app: podinfo, version: '1'}}\n\
             spec: {containers: [{name: app, image: 'podinfo:1', ports: [{containerPort: 80, name: http}]}]}",
        )
        .unwrap();
        let b: PodTemplateSpec = serde_yaml_ng::from_str(
            "spec:\n  volumes: []\n  containers:\n  - ports: [{name: http, containerPort: 80}]\n    image: 'podinfo:1'\n    name: app\n    env: []\n\
             metadata: {annotations: {}, labels: {version: '1', app: podinfo}}",
        )
        .unwrap();
        assert_eq!(
            template_fingerprint(&a, &BTreeMap::new()),
            template_fingerprint(&b, &BTreeMap::new())
        );
    }

    #[test]
    fn fingerprint_ignores_what_serin_and_flux_write() {
        let base = template_fingerprint(&template(), &configs());
        let mut t = template();
        let meta = t.metadata.as_mut().unwrap();
        meta.annotations
            .as_mut()
            .unwrap()
            .insert("flagger-id".into(), "random".into());
        meta.annotations.as_mut().unwrap().insert(
            "kustomize.toolkit.fluxcd.io/checksum".into(),
            "changed".into(),
        );
        meta.labels
            .as_mut()
            .unwrap()
            .insert("kustomize.toolkit.fluxcd.io/name".into(), "apps".into());
        t.spec.as_mut().unwrap().node_selector = Some(map(&[(SCALE_TO_ZERO_SELECTOR, "true")]));
        assert_eq!(template_fingerprint(&t, &configs()), base);
    }

    #[test]
    fn any_change_to_the_revision_changes_the_fingerprint() {
        let base = template_fingerprint(&template(), &configs());
        type Edit = fn(&mut PodTemplateSpec, &mut BTreeMap<String, String>);
        let edits: [(&str, Edit); 6] = [
            ("image", |t, _| {
                t.spec.as_mut().unwrap().containers[0].image = Some("podinfo:6.0.1".into())
            }),
            ("env value", |t, _| {
                t.spec.as_mut().unwrap().containers[0].env = Some(vec![EnvVar {
                    name: "LOG".into(),
                    value: Some("debug".into()),
                    ..Default::default()
                }])
            }),
            ("config contents", |_, c| {
                c.insert(
                    "configmap/podinfo-config-vol".into(),
                    "1111111111111111".into(),
                );
            }),
            ("config added", |_, c| {
                c.insert("secret/new".into(), "2222222222222222".into());
            }),
            ("pod label", |t, _| {
                t.metadata
                    .as_mut()
                    .unwrap()
                    .labels
                    .as_mut()
                    .unwrap()
                    .insert("version".into(), "7".into());
            }),
            ("pod annotation", |t, _| {
                t.metadata
                    .as_mut()
                    .unwrap()
                    .annotations
                    .as_mut()
                    .unwrap()
                    .insert("restartedAt".into(), "now".into());
            }),
        ];
        for (name, edit) in edits {
            let (mut t, mut c) = (template(), configs());
            edit(&mut t, &mut c);
            assert_ne!(template_fingerprint(&t, &c), base, "{name}");
        }
    }

    #[test]
    fn serin_fingerprints_are_told_apart_from_flagger_hashes() {
        let cases = [
            (template_fingerprint(&template(), &configs()), true),
            ("85d557f47b".to_string(), false),
            (String::new(), false),
        ];
        for (s, want) in cases {
            assert_eq!(is_serin_fingerprint(&s), want, "{s}");
        }
    }
}
