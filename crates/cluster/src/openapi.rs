//! The OpenAPI documents the embedded API server publishes (`/openapi/v3`, `/openapi/v2`): real
//! schemas of the built-in kinds (from k8s-openapi) and of every served CRD version; pure.
//!
//! As kube-apiserver does, each group version gets one v3 document whose `components.schemas`
//! hold the kinds (with `x-kubernetes-group-version-kind`) and everything they reference, and
//! whose paths carry the query parameters kubectl looks for (`fieldValidation`). A CRD version's
//! definition is its `openAPIV3Schema` named by the reversed group (`app.flagger.v1beta1.Canary`),
//! with `apiVersion`, `kind` and `metadata` (a reference to `ObjectMeta`) added.
//!
//! Built-in kinds get their schema from `builtin_schemas()` (a list of k8s-openapi types): a kind the resource table serves but
//! this list lacks is published without a schema (kubectl explain cannot describe it; server-side
//! validation is unaffected). Add new built-in kinds there.
use k8s_openapi::Resource;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};

use super::resources::ResourceType;

/// One built-in kind: its group, version, kind and a schema writer.
type BuiltinSchema = (
    &'static str,
    &'static str,
    &'static str,
    fn(&mut SchemaGenerator) -> Schema,
);

fn entry<T: Resource + JsonSchema>() -> BuiltinSchema {
    (T::GROUP, T::VERSION, T::KIND, |g| g.subschema_for::<T>())
}

/// The built-in kinds whose real schema is published (when the resource table serves them).
/// RBAC and PodDisruptionBudget are listed ahead of being served, so adding them to the resource
/// table is enough.
fn builtin_schemas() -> Vec<BuiltinSchema> {
    use k8s_openapi::api::{
        apps::v1 as apps, autoscaling::v2 as autoscaling, coordination::v1 as coordination,
        core::v1 as core, events::v1 as events, networking::v1 as networking, policy::v1 as policy,
        rbac::v1 as rbac,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
    vec![
        entry::<core::Namespace>(),
        entry::<core::Node>(),
        entry::<core::Service>(),
        entry::<core::Endpoints>(),
        entry::<core::ConfigMap>(),
        entry::<core::Secret>(),
        entry::<core::ServiceAccount>(),
        entry::<core::Pod>(),
        entry::<core::Event>(),
        entry::<apps::Deployment>(),
        entry::<apps::ReplicaSet>(),
        entry::<apps::DaemonSet>(),
        entry::<apps::StatefulSet>(),
        entry::<apps::ControllerRevision>(),
        entry::<core::PersistentVolumeClaim>(),
        entry::<autoscaling::HorizontalPodAutoscaler>(),
        entry::<networking::Ingress>(),
        entry::<networking::IngressClass>(),
        entry::<coordination::Lease>(),
        entry::<events::Event>(),
        entry::<apiextensions::CustomResourceDefinition>(),
        entry::<rbac::ClusterRole>(),
        entry::<rbac::ClusterRoleBinding>(),
        entry::<rbac::Role>(),
        entry::<rbac::RoleBinding>(),
        entry::<policy::PodDisruptionBudget>(),
    ]
}

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

/// `flagger.app` → `app.flagger`, kube-apiserver's prefix for CRD definitions.
fn reversed(group: &str) -> String {
    let mut parts: Vec<&str> = group.split('.').collect();
    parts.reverse();
    parts.join(".")
}

/// The definition name of a kind: k8s-openapi's for built-ins, kube-apiserver's for CRDs.
pub fn definition_name(rt: &ResourceType) -> String {
    if rt.custom {
        format!("{}.{}.{}", reversed(&rt.group), rt.version, rt.kind)
    } else {
        builtin_schemas()
            .into_iter()
            .find(|(g, v, k, _)| *g == rt.group && *v == rt.version && *k == rt.kind)
            .map(|(_, _, _, f)| {
                let mut generator = SchemaSettings::openapi3().into_generator();
                let r = f(&mut generator);
                r.get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|s| s.rsplit('/').next())
                    .map(str::to_owned)
                    .unwrap_or_else(|| rt.kind.clone())
            })
            .unwrap_or_else(|| rt.kind.clone())
    }
}

fn gvk(rt: &ResourceType) -> Value {
    json!([{"group": rt.group, "version": rt.version, "kind": rt.kind}])
}

/// The `components.schemas` of one group version's v3 document (refs `#/components/schemas/`).
pub fn components(types: &[std::sync::Arc<ResourceType>]) -> Map<String, Value> {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let builtins = builtin_schemas();
    let mut own: Vec<(String, Value)> = Vec::new();
    for rt in types {
        if rt.custom {
            let Some(schema) = rt.schema.as_deref() else {
                continue;
            };
            generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>();
            generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta>();
            let name = definition_name(rt);
            own.push((name.clone(), crd_definition(rt, schema)));
            own.push((format!("{name}List"), crd_list_definition(rt, &name)));
        } else if let Some((_, _, _, f)) = builtins
            .iter()
            .find(|(g, v, k, _)| *g == rt.group && *v == rt.version && *k == rt.kind)
        {
            f(&mut generator);
            own.push((definition_name(rt), Value::Null));
        }
    }
    let mut defs = generator.take_definitions(true);
    for (name, def) in own {
        if def.is_null() {
            // A built-in kind: mark it with its GVK, as kube-apiserver does.
            let gv = types
                .iter()
                .find(|rt| !rt.custom && definition_name(rt) == name)
                .map(|rt| gvk(rt));
            if let (Some(Value::Object(d)), Some(gv)) = (defs.get_mut(&name), gv) {
                d.insert("x-kubernetes-group-version-kind".into(), gv);
            }
        } else {
            defs.insert(name, def);
        }
    }
    defs
}

/// A CRD version's schema as kube-apiserver publishes it.
fn crd_definition(rt: &ResourceType, schema: &Value) -> Value {
    let mut def = schema.clone();
    if let Some(m) = def.as_object_mut() {
        m.insert("type".into(), json!("object"));
        m.insert("x-kubernetes-group-version-kind".into(), gvk(rt));
        let props = m
            .entry("properties")
            .or_insert_with(|| json!({}))
            .as_object_mut();
        if let Some(props) = props {
            props.insert("apiVersion".into(), json!({"type": "string",
                "description": "APIVersion defines the versioned schema of this representation of an object."}));
            props.insert(
                "kind".into(),
                json!({"type": "string",
                "description": "Kind is a string value representing the REST resource this object represents."}),
            );
            props.insert(
                "metadata".into(),
                json!({"allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}],
                "description": "Standard object's metadata."}),
            );
        }
    }
    def
}

fn crd_list_definition(rt: &ResourceType, item: &str) -> Value {
    json!({
        "description": format!("{}List is a list of {}", rt.kind, rt.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}},
            "metadata": {"allOf": [{"$ref": format!("#/components/schemas/{LIST_META}")}]}
        },
        "x-kubernetes-group-version-kind": [{"group": rt.group, "version": rt.version, "kind": format!("{}List", rt.kind)}]
    })
}

/// The same definitions for the OpenAPI v2 document: refs point at `#/definitions/`, and CRD
/// schemas lose what kube-apiserver drops from v2 (`oneOf`, `anyOf`, `allOf`, `not`,
/// `nullable`, `x-kubernetes-validations`), which v2 cannot express.
pub fn v2_definitions(types: &[std::sync::Arc<ResourceType>]) -> Map<String, Value> {
    let mut defs = components(types);
    for def in defs.values_mut() {
        to_v2(def);
    }
    // k8s-openapi types apiextensions' `JSON` as an object; Kubernetes publishes it untyped (its
    // `OpenAPISchemaType` is nil), so any JSON value passes kubectl's validation.
    if let Some(Value::Object(json)) =
        defs.get_mut("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON")
    {
        json.remove("type");
    }
    defs
}

/// One schema made v2-shaped; recurses into subschemas only (`properties` values, `items`,
/// `additionalProperties`), never into property names, enums, defaults or extensions.
fn to_v2(v: &mut Value) {
    let Value::Object(m) = v else {
        return;
    };
    // `metadata: {allOf: [{$ref}]}` becomes the plain `$ref` v2 clients expect.
    let single_ref = m
        .get("allOf")
        .and_then(Value::as_array)
        .filter(|a| a.len() == 1)
        .and_then(|a| a[0].get("$ref").cloned());
    if let Some(r) = single_ref {
        m.remove("allOf");
        m.insert("$ref".into(), r);
    }
    if let Some(Value::String(r)) = m.get_mut("$ref") {
        *r = r.replace("#/components/schemas/", "#/definitions/");
    }
    // As kube-apiserver's `ToStructuralOpenAPIV2`: kubectl's v2 validation cannot cope with
    // nullable values or unknown fields under a typed schema, nor with an array without an item
    // schema.
    if m.get("nullable") == Some(&Value::Bool(true)) {
        for k in ["type", "items", "properties"] {
            m.remove(k);
        }
    }
    if m.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        m.remove("items");
        m.remove("properties");
    }
    if m.get("type").and_then(Value::as_str) == Some("array") && !m.contains_key("items") {
        m.remove("type");
    }
    for k in [
        "oneOf",
        "anyOf",
        "allOf",
        "not",
        "nullable",
        "x-kubernetes-validations",
    ] {
        m.remove(k);
    }
    if let Some(Value::Object(props)) = m.get_mut("properties") {
        props.values_mut().for_each(to_v2);
    }
    match m.get_mut("items") {
        Some(Value::Array(items)) => items.iter_mut().for_each(to_v2),
        Some(item) => to_v2(item),
        None => {}
    }
    if let Some(extra @ Value::Object(_)) = m.get_mut("additionalProperties") {
        to_v2(extra);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::builtins;
    use serde::Deserialize;
    use std::sync::Arc;

    #[test]
    fn every_served_builtin_kind_has_a_real_schema() {
        let types: Vec<Arc<ResourceType>> = builtins().into_iter().map(Arc::new).collect();
        let defs = components(&types);
        for rt in &types {
            let name = definition_name(rt);
            let def = defs.get(&name);
            assert!(
                def.is_some_and(
                    |d| d["x-kubernetes-group-version-kind"][0]["kind"] == rt.kind.as_str()
                ),
                "{}/{} {}: no schema named {name}",
                rt.group,
                rt.version,
                rt.kind
            );
        }
        assert!(defs.contains_key(OBJECT_META));
        let deployment = &defs["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["properties"]["spec"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
        );
    }

    #[test]
    fn a_crd_version_is_published_under_its_reversed_group_with_object_meta() {
        // The committed CRD file: the embedded cluster imports nothing from the operator.
        let crd = serde_yaml_ng::Deserializer::from_str(include_str!("../../../crds/flagger.yaml"))
            .filter_map(|d| serde_json::Value::deserialize(d).ok())
            .find(|d| d["metadata"]["name"] == "canaries.flagger.app")
            .expect("crds/flagger.yaml has the Canary CRD");
        let mut registry = crate::resources::Registry::with_builtins();
        registry.register_crd(&crd);
        let types = registry.in_group_version("flagger.app", "v1beta1");
        let defs = components(&types);
        let canary = &defs["app.flagger.v1beta1.Canary"];
        assert_eq!(
            canary["x-kubernetes-group-version-kind"][0]["kind"],
            "Canary"
        );
        assert_eq!(
            canary["properties"]["metadata"]["allOf"][0]["$ref"],
            format!("#/components/schemas/{OBJECT_META}")
        );
        assert!(canary["properties"]["spec"]["properties"]["analysis"].is_object());
        assert!(defs.contains_key("app.flagger.v1beta1.CanaryList"));
        assert!(defs.contains_key(OBJECT_META));
        let v2 = v2_definitions(&types);
        assert_eq!(
            v2["app.flagger.v1beta1.Canary"]["properties"]["metadata"]["$ref"],
            format!("#/definitions/{OBJECT_META}")
        );
        assert!(
            v2["app.flagger.v1beta1.Canary"]["properties"]["spec"]["properties"]["analysis"]
                .get("oneOf")
                .is_none()
        );
    }
}
