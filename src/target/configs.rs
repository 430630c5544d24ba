//! Config tracking: which ConfigMaps and Secrets a pod spec references, Flagger-compatible
//! checksums of their data, and the `-primary` copies the primary workload mounts; pure, no I/O.
//!
//! Flagger copies every tracked config to `<name>-primary` and points the primary's pod spec at the
//! copies, so that a change to a config the target uses reaches the primary only by promotion.
use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};

use crate::api::Canary;
use crate::core::fields::{drop_toolkit_keys, owner_reference};

/// Annotation opting a ConfigMap or Secret out of tracking (any value starting with `disable`).
pub const CONFIG_TRACKING_ANNOTATION: &str = "flagger.app/config-tracking";

/// Secret types Flagger tracks; registry and service-account secrets are left alone.
pub const TRACKED_SECRET_TYPES: [&str; 4] = [
    "Opaque",
    "kubernetes.io/basic-auth",
    "kubernetes.io/ssh-auth",
    "kubernetes.io/tls",
];

/// The kind of a tracked config object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigKind {
    /// A core/v1 ConfigMap.
    ConfigMap,
    /// A core/v1 Secret.
    Secret,
}

impl ConfigKind {
    /// The prefix of the status key (`configmap`, `secret`), as Flagger writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConfigMap => "configmap",
            Self::Secret => "secret",
        }
    }
}

/// A reference from a pod spec to a ConfigMap or Secret.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigRef {
    /// ConfigMap or Secret.
    pub kind: ConfigKind,
    /// Name of the referenced object (same namespace as the pod).
    pub name: String,
    /// True when every reference to it is marked `optional`: a missing object is then skipped.
    pub optional: bool,
}

/// Renames applied to the primary's pod spec: `(kind, name)` → `<name>-primary`.
pub type ConfigRenames = BTreeMap<(ConfigKind, String), String>;

/// The key of a tracked config in `status.trackedConfigs`: `configmap/<name>` or `secret/<name>`.
pub fn status_key(kind: ConfigKind, name: &str) -> String {
    format!("{}/{name}", kind.as_str())
}

/// The name of the primary copy of a config object.
pub fn primary_name(name: &str) -> String {
    format!("{name}-primary")
}

/// Visits every ConfigMap/Secret name a pod spec references (volumes including projected sources,
/// `env[].valueFrom`, `envFrom[]`, in containers and init containers), mutably, with its `optional`.
pub(crate) fn visit_refs_mut(spec: &mut PodSpec, f: &mut dyn FnMut(ConfigKind, &mut String, bool)) {
    let opt = |o: Option<bool>| o.unwrap_or(false);
    for volume in spec.volumes.iter_mut().flatten() {
        if let Some(cm) = volume.config_map.as_mut() {
            f(ConfigKind::ConfigMap, &mut cm.name, opt(cm.optional));
        }
        if let Some(secret) = volume.secret.as_mut()
            && let Some(name) = secret.secret_name.as_mut()
        {
            f(ConfigKind::Secret, name, opt(secret.optional));
        }
        if let Some(projected) = volume.projected.as_mut() {
            for source in projected.sources.iter_mut().flatten() {
                if let Some(cm) = source.config_map.as_mut() {
                    f(ConfigKind::ConfigMap, &mut cm.name, opt(cm.optional));
                }
                if let Some(secret) = source.secret.as_mut() {
                    f(ConfigKind::Secret, &mut secret.name, opt(secret.optional));
                }
            }
        }
    }
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for container in containers {
        for env in container.env.iter_mut().flatten() {
            if let Some(from) = env.value_from.as_mut() {
                if let Some(cm) = from.config_map_key_ref.as_mut() {
                    f(ConfigKind::ConfigMap, &mut cm.name, opt(cm.optional));
                } else if let Some(secret) = from.secret_key_ref.as_mut() {
                    f(ConfigKind::Secret, &mut secret.name, opt(secret.optional));
                }
            }
        }
        for from in container.env_from.iter_mut().flatten() {
            if let Some(cm) = from.config_map_ref.as_mut() {
                f(ConfigKind::ConfigMap, &mut cm.name, opt(cm.optional));
            } else if let Some(secret) = from.secret_ref.as_mut() {
                f(ConfigKind::Secret, &mut secret.name, opt(secret.optional));
            }
        }
    }
}

/// Renames config references in a pod spec through `renames`; references not in the map stay.
pub(crate) fn rename_refs(spec: &mut PodSpec, renames: &ConfigRenames) {
    visit_refs_mut(spec, &mut |kind, name, _| {
        if let Some(new) = renames.get(&(kind, name.clone())) {
            name.clone_from(new);
        }
    });
}

/// The ConfigMaps and Secrets a pod spec references, sorted by kind then name, one entry per
/// object. A reference is optional only when every reference to that object is optional.
pub fn tracked_refs(spec: &PodSpec) -> Vec<ConfigRef> {
    let mut found: BTreeMap<(ConfigKind, String), bool> = BTreeMap::new();
    // The visitor needs `&mut`; work on a copy rather than duplicating the traversal.
    let mut copy = spec.clone();
    visit_refs_mut(&mut copy, &mut |kind, name, optional| {
        if name.is_empty() {
            return;
        }
        let entry = found.entry((kind, name.clone())).or_insert(true);
        *entry = *entry && optional;
    });
    found
        .into_iter()
        .map(|((kind, name), optional)| ConfigRef {
            kind,
            name,
            optional,
        })
        .collect()
}

/// The renames for a set of tracked references: each to `<name>-primary`.
pub fn renames_for<'a>(refs: impl IntoIterator<Item = &'a ConfigRef>) -> ConfigRenames {
    refs.into_iter()
        .map(|r| ((r.kind, r.name.clone()), primary_name(&r.name)))
        .collect()
}

fn tracking_disabled(meta: &ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(CONFIG_TRACKING_ANNOTATION))
        .is_some_and(|v| v.starts_with("disable"))
}

/// Whether a ConfigMap is tracked (not opted out by annotation).
pub fn is_tracked_configmap(cm: &ConfigMap) -> bool {
    !tracking_disabled(&cm.metadata)
}

/// Whether a Secret is tracked: one of [`TRACKED_SECRET_TYPES`] and not opted out.
///
/// Flagger compares the Go field, which is empty when the type is absent; the API server always
/// defaults it to `Opaque`, so an absent type is treated as `Opaque` here.
pub fn is_tracked_secret(s: &Secret) -> bool {
    let ty = s.type_.as_deref().unwrap_or("Opaque");
    TRACKED_SECRET_TYPES.contains(&ty) && !tracking_disabled(&s.metadata)
}

/// Appends `s` as a JSON string the way Go's `encoding/json.Marshal` does (Go ≥ 1.22): HTML-safe
/// escapes for `<`, `>`, `&`, `\u2028`, `\u2029`; short escapes for `\b \f \n \r \t`; other
/// control characters as `\u00xx` with lowercase hex; everything else literal UTF-8.
fn push_go_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go's `json.Marshal` of a `map[string]string`: keys in byte order (a `BTreeMap` iterates in the
/// same order), no whitespace; a nil map is `null`.
fn go_json_map<'a>(entries: Option<impl Iterator<Item = (&'a String, String)>>) -> String {
    let Some(entries) = entries else {
        return "null".to_string();
    };
    let mut out = String::from("{");
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_go_json_string(&mut out, k);
        out.push(':');
        push_go_json_string(&mut out, &v);
    }
    out.push('}');
    out
}

fn checksum_of(json: &str) -> String {
    let digest = Sha256::digest(json.as_bytes());
    digest.iter().take(8).fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Flagger's checksum of a ConfigMap: hex of the first 8 bytes of sha256 over Go's JSON of `data`.
///
/// `binaryData` is not part of it (as in Flagger). An empty `data` counts as absent (`null`):
/// the API server omits empty maps, so Flagger never sees an empty non-nil one.
pub fn checksum_configmap(cm: &ConfigMap) -> String {
    let data = cm.data.as_ref().filter(|d| !d.is_empty());
    checksum_of(&go_json_map(
        data.map(|d| d.iter().map(|(k, v)| (k, v.clone()))),
    ))
}

/// Flagger's checksum of a Secret: as [`checksum_configmap`] over `data`, whose values Go marshals
/// as standard base64 with padding.
pub fn checksum_secret(s: &Secret) -> String {
    use k8s_openapi::ByteString;
    let data = s.data.as_ref().filter(|d| !d.is_empty());
    let b64 = |v: &ByteString| {
        // ByteString serialises as exactly the base64 string Go produces for []byte.
        serde_json::to_value(v)
            .ok()
            .and_then(|j| j.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    checksum_of(&go_json_map(
        data.map(|d| d.iter().map(|(k, v)| (k, b64(v)))),
    ))
}

fn primary_meta(meta: &ObjectMeta, canary: &Canary) -> ObjectMeta {
    let name = meta.name.as_deref().unwrap_or_default();
    ObjectMeta {
        name: Some(primary_name(name)),
        namespace: canary.metadata.namespace.clone().or(meta.namespace.clone()),
        labels: meta.labels.as_ref().map(drop_toolkit_keys),
        annotations: meta.annotations.as_ref().map(drop_toolkit_keys),
        owner_references: Some(vec![owner_reference(canary)]),
        ..Default::default()
    }
}

/// The desired `<name>-primary` copy of a tracked ConfigMap, owned by the Canary: data and
/// binaryData copied (Flagger drops binaryData), labels and annotations copied minus Flux toolkit
/// keys. `immutable` is not copied: the copy is rewritten on every promotion.
pub fn primary_configmap(cm: &ConfigMap, canary: &Canary) -> ConfigMap {
    ConfigMap {
        metadata: primary_meta(&cm.metadata, canary),
        data: cm.data.clone(),
        binary_data: cm.binary_data.clone(),
        immutable: None,
    }
}

/// The desired `<name>-primary` copy of a tracked Secret, owned by the Canary: type and data copied,
/// labels and annotations copied minus Flux toolkit keys; `immutable` is not copied.
pub fn primary_secret(s: &Secret, canary: &Canary) -> Secret {
    Secret {
        metadata: primary_meta(&s.metadata, canary),
        type_: s.type_.clone(),
        data: s.data.clone(),
        string_data: None,
        immutable: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::{
        ConfigMapEnvSource, ConfigMapKeySelector, ConfigMapProjection, ConfigMapVolumeSource,
        Container, EnvFromSource, EnvVar, EnvVarSource, ProjectedVolumeSource, SecretEnvSource,
        SecretKeySelector, SecretProjection, SecretVolumeSource, Volume, VolumeProjection,
    };

    fn cm(data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("podinfo-config".into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    /// sha256 of `json`, first 8 bytes as hex, computed independently of `checksum_of`.
    fn expected(json: &str) -> String {
        let d = Sha256::digest(json.as_bytes());
        d[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn configmap_checksum_hashes_go_json_of_data_with_sorted_keys() {
        // Go sorts map keys and writes no whitespace: {"a":"1","b":"2"}.
        let sum = checksum_configmap(&cm(&[("b", "2"), ("a", "1")]));
        assert_eq!(sum, expected(r#"{"a":"1","b":"2"}"#));
        assert_eq!(sum.len(), 16);
    }

    #[test]
    fn configmap_checksum_escapes_like_go_encoding_json() {
        // Each row: a value and the bytes Go's json.Marshal writes for it (see encode.go's
        // htmlSafeSet and the Go 1.22 change that writes \b and \f as short escapes).
        let cases = [
            ("<a&b>", r#""\u003ca\u0026b\u003e""#),
            ("line\nbreak\ttab\r", r#""line\nbreak\ttab\r""#),
            ("\u{8}\u{c}", r#""\b\f""#),
            ("\u{1}\u{1f}", r#""\u0001\u001f""#),
            ("quote\" back\\", r#""quote\" back\\""#),
            ("sep\u{2028}\u{2029}", r#""sep\u2028\u2029""#),
            ("é ✓ \u{7f}", "\"é ✓ \u{7f}\""),
        ];
        for (value, go_json) in cases {
            let sum = checksum_configmap(&cm(&[("k", value)]));
            assert_eq!(sum, expected(&format!(r#"{{"k":{go_json}}}"#)), "{value:?}");
        }
    }

    #[test]
    fn configmap_without_data_hashes_like_a_nil_go_map() {
        let mut empty = cm(&[]);
        assert_eq!(checksum_configmap(&empty), expected("null"));
        empty.data = None;
        assert_eq!(checksum_configmap(&empty), expected("null"));
    }

    #[test]
    fn secret_checksum_hashes_base64_values() {
        // Go marshals []byte as standard base64 with padding: "hunter2" → "aHVudGVyMg==".
        let s = Secret {
            data: Some(BTreeMap::from([
                ("password".to_string(), ByteString(b"hunter2".to_vec())),
                ("user".to_string(), ByteString(b"admin".to_vec())),
            ])),
            ..Default::default()
        };
        assert_eq!(
            checksum_secret(&s),
            expected(r#"{"password":"aHVudGVyMg==","user":"YWRtaW4="}"#)
        );
    }

    #[test]
    fn checksum_changes_when_any_value_changes() {
        let a = checksum_configmap(&cm(&[("k", "v1")]));
        let b = checksum_configmap(&cm(&[("k", "v2")]));
        assert_ne!(a, b);
    }

    fn spec_with_every_reference_kind() -> PodSpec {
        let env = |cm: Option<(&str, bool)>, secret: Option<(&str, bool)>| EnvVar {
            name: "E".into(),
            value_from: Some(EnvVarSource {
                config_map_key_ref: cm.map(|(n, o)| ConfigMapKeySelector {
                    name: n.into(),
                    key: "k".into(),
                    optional: Some(o),
                }),
                secret_key_ref: secret.map(|(n, o)| SecretKeySelector {
                    name: n.into(),
                    key: "k".into(),
                    optional: Some(o),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        PodSpec {
            volumes: Some(vec![
                Volume {
                    name: "cfg".into(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: "vol-cm".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                Volume {
                    name: "sec".into(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some("vol-secret".into()),
                        optional: Some(true),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                Volume {
                    name: "proj".into(),
                    projected: Some(ProjectedVolumeSource {
                        sources: Some(vec![
                            VolumeProjection {
                                config_map: Some(ConfigMapProjection {
                                    name: "proj-cm".into(),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            },
                            VolumeProjection {
                                secret: Some(SecretProjection {
                                    name: "proj-secret".into(),
                                    ..Default::default()
                                }),
                                ..Default::default()
                            },
                        ]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]),
            containers: vec![Container {
                name: "app".into(),
                env: Some(vec![
                    env(Some(("env-cm", false)), None),
                    env(None, Some(("env-secret", true))),
                    // the same secret again, mandatory this time
                    env(None, Some(("vol-secret", false))),
                ]),
                env_from: Some(vec![EnvFromSource {
                    config_map_ref: Some(ConfigMapEnvSource {
                        name: "envfrom-cm".into(),
                        optional: None,
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            init_containers: Some(vec![Container {
                name: "init".into(),
                env_from: Some(vec![EnvFromSource {
                    secret_ref: Some(SecretEnvSource {
                        name: "init-secret".into(),
                        optional: Some(true),
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn tracked_refs_finds_every_reference_sorted_and_deduplicated() {
        let refs = tracked_refs(&spec_with_every_reference_kind());
        let got: Vec<(ConfigKind, &str, bool)> = refs
            .iter()
            .map(|r| (r.kind, r.name.as_str(), r.optional))
            .collect();
        use ConfigKind::{ConfigMap as C, Secret as S};
        assert_eq!(
            got,
            vec![
                (C, "env-cm", false),
                (C, "envfrom-cm", false),
                (C, "proj-cm", false),
                (C, "vol-cm", false),
                (S, "env-secret", true),
                (S, "init-secret", true),
                (S, "proj-secret", false),
                // optional in the volume, mandatory in env: mandatory wins
                (S, "vol-secret", false),
            ]
        );
    }

    #[test]
    fn renaming_rewrites_only_the_listed_references() {
        let mut spec = spec_with_every_reference_kind();
        let refs: Vec<ConfigRef> = tracked_refs(&spec)
            .into_iter()
            .filter(|r| r.name != "env-cm")
            .collect();
        rename_refs(&mut spec, &renames_for(&refs));
        let names: Vec<String> = tracked_refs(&spec).into_iter().map(|r| r.name).collect();
        assert!(names.contains(&"env-cm".to_string()));
        assert!(names.contains(&"vol-secret-primary".to_string()));
        assert!(names.contains(&"init-secret-primary".to_string()));
        assert!(names.contains(&"proj-cm-primary".to_string()));
        assert_eq!(names.iter().filter(|n| n.ends_with("-primary")).count(), 7);
    }

    #[test]
    fn tracking_opt_out_and_secret_types_follow_flagger() {
        let with = |ann: Option<&str>| ObjectMeta {
            annotations: ann
                .map(|v| BTreeMap::from([(CONFIG_TRACKING_ANNOTATION.to_string(), v.to_string())])),
            ..Default::default()
        };
        let cases = [
            (None, true),
            (Some("disabled"), false),
            (Some("disable"), false),
            (Some("enabled"), true),
            (Some("Disabled"), true),
        ];
        for (ann, tracked) in cases {
            let c = ConfigMap {
                metadata: with(ann),
                ..Default::default()
            };
            assert_eq!(is_tracked_configmap(&c), tracked, "{ann:?}");
        }
        let secret_cases = [
            (None, true),
            (Some("Opaque"), true),
            (Some("kubernetes.io/tls"), true),
            (Some("kubernetes.io/basic-auth"), true),
            (Some("kubernetes.io/ssh-auth"), true),
            (Some("kubernetes.io/dockerconfigjson"), false),
            (Some("kubernetes.io/service-account-token"), false),
        ];
        for (ty, tracked) in secret_cases {
            let s = Secret {
                type_: ty.map(str::to_string),
                ..Default::default()
            };
            assert_eq!(is_tracked_secret(&s), tracked, "{ty:?}");
        }
        let disabled = Secret {
            metadata: with(Some("disabled")),
            type_: Some("Opaque".into()),
            ..Default::default()
        };
        assert!(!is_tracked_secret(&disabled));
    }

    #[test]
    fn status_keys_use_flagger_prefixes() {
        assert_eq!(status_key(ConfigKind::ConfigMap, "a"), "configmap/a");
        assert_eq!(status_key(ConfigKind::Secret, "b"), "secret/b");
    }

    fn canary() -> Canary {
        let mut c = Canary::new("podinfo", Default::default());
        c.metadata.namespace = Some("test".into());
        c.metadata.uid = Some("uid-1".into());
        c
    }

    #[test]
    fn primary_configmap_is_an_owned_copy_without_toolkit_keys() {
        let mut source = cm(&[("k", "v")]);
        source.metadata.namespace = Some("test".into());
        source.metadata.labels = Some(BTreeMap::from([
            ("app".into(), "podinfo".into()),
            ("kustomize.toolkit.fluxcd.io/name".into(), "apps".into()),
        ]));
        source.binary_data = Some(BTreeMap::from([("b".into(), ByteString(vec![0, 1]))]));
        source.immutable = Some(true);
        let p = primary_configmap(&source, &canary());
        assert_eq!(p.metadata.name.as_deref(), Some("podinfo-config-primary"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("test"));
        assert_eq!(
            p.metadata.labels,
            Some(BTreeMap::from([("app".into(), "podinfo".into())]))
        );
        assert_eq!(p.data, source.data);
        assert_eq!(p.binary_data, source.binary_data);
        assert_eq!(p.immutable, None);
        let owner = &p.metadata.owner_references.clone().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("Canary", "podinfo")
        );
        assert_eq!(checksum_configmap(&p), checksum_configmap(&source));
    }

    #[test]
    fn primary_secret_keeps_type_and_data() {
        let s = Secret {
            metadata: ObjectMeta {
                name: Some("db".into()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(BTreeMap::from([(
                "tls.crt".into(),
                ByteString(b"x".to_vec()),
            )])),
            ..Default::default()
        };
        let p = primary_secret(&s, &canary());
        assert_eq!(p.metadata.name.as_deref(), Some("db-primary"));
        assert_eq!(p.type_.as_deref(), Some("kubernetes.io/tls"));
        assert_eq!(p.data, s.data);
        assert_eq!(checksum_secret(&p), checksum_secret(&s));
    }
}
