//! Write semantics of the API server: create, update, patch, apply, delete and scale with the
//! Kubernetes conventions (resourceVersion, generation, status split, managedFields, finalizers,
//! defaulting). Runs under the state lock; no I/O.
use std::sync::Arc;

use base64::Engine;
use serde_json::{Map, Value, json};

use super::defaults;
use super::fields::{self, FieldSet, Schema};
use super::patch::{self, PatchType};
use super::resources::{GroupResource, ResourceType};
use super::schema;
use super::status::{ApiError, FieldError, FieldErrorKind};
use super::store::{EventKind, State, meta_str};

/// Who writes and how.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The field manager (the `fieldManager` parameter, else the User-Agent's program name).
    pub manager: String,
    /// `dryRun=All`: validate and answer, but store nothing.
    pub dry_run: bool,
    /// Now, RFC 3339 with seconds.
    pub now: String,
    /// `fieldValidation=Strict`: unknown fields are an error instead of being dropped.
    pub strict: bool,
}

/// The main resource or its `/status` subresource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    /// The object itself; status is ignored where a status subresource exists.
    Main,
    /// `/status`: only status changes.
    Status,
}

/// Metadata fields the server owns; a write cannot set them.
const SYSTEM_META: [&str; 8] = [
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "managedFields",
    "selfLink",
];

/// The schema that says how lists of `rt` merge.
pub fn schema_of(rt: &ResourceType) -> Schema {
    if rt.custom {
        Schema::Custom(rt.schema.clone())
    } else {
        Schema::Builtin(rt.plural.clone())
    }
}

fn random_suffix(len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = next_random();
    (0..len)
        .map(|_| {
            let c = ALPHABET[(x % ALPHABET.len() as u64) as usize] as char;
            x /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// A process-wide splitmix64 stream seeded from the clock: uids and names need to be unique, not secret.
pub fn next_random() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut z = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) ^ seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn new_uid() -> String {
    let (a, b) = (next_random(), next_random());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    match &mut obj["metadata"] {
        Value::Object(m) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// RFC 1123 subdomain, as object names must be.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

// ---------------------------------------------------------------------------------------------
// managedFields

/// One `managedFields` entry.
#[derive(Debug, Clone)]
struct Managed {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    sub: Option<String>,
    set: FieldSet,
}

fn read_managed(obj: &Value) -> Vec<Managed> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| Managed {
            manager: e["manager"].as_str().unwrap_or_default().to_string(),
            operation: e["operation"].as_str().unwrap_or("Update").to_string(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
            time: e["time"].as_str().unwrap_or_default().to_string(),
            sub: e["subresource"].as_str().map(String::from),
            set: FieldSet::from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

fn write_managed(obj: &mut Value, entries: &[Managed]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.set.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": e.set.to_fields_v1(),
            });
            if let Some(s) = &e.sub {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    let m = meta_mut(obj);
    if list.is_empty() {
        m.remove("managedFields");
    } else {
        m.insert("managedFields".into(), Value::Array(list));
    }
}

/// The part of an object whose fields are tracked: metadata labels, annotations, finalizers and
/// ownerReferences, and either everything but status or only status.
fn tracked(obj: &Value, rt: &ResourceType, sub: Sub) -> Value {
    let mut out = Map::new();
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            match k.as_str() {
                "apiVersion" | "kind" => {}
                "metadata" => {
                    if sub == Sub::Status {
                        continue;
                    }
                    let mut meta = Map::new();
                    for f in ["labels", "annotations", "finalizers", "ownerReferences"] {
                        if let Some(x) = v.get(f) {
                            meta.insert(f.into(), x.clone());
                        }
                    }
                    if !meta.is_empty() {
                        out.insert(k.clone(), Value::Object(meta));
                    }
                }
                "status" if rt.status && sub == Sub::Main => {}
                _ if sub == Sub::Status && k != "status" => {}
                _ => {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
    }
    Value::Object(out)
}

fn set_of(v: &Value, schema: &Schema) -> FieldSet {
    let mut fs = FieldSet::default();
    fields::collect(v, schema, &mut vec![], &mut fs);
    fs
}

/// Records a non-apply write: the manager gains the fields it changed, the others lose them.
fn track_update(old: Option<&Value>, new: &mut Value, rt: &ResourceType, sub: Sub, ctx: &Ctx) {
    let schema = schema_of(rt);
    let new_t = tracked(new, rt, sub);
    let mut changed = FieldSet::default();
    let old_t = old.map(|o| tracked(o, rt, sub));
    fields::diff(
        old_t.as_ref(),
        Some(&new_t),
        &schema,
        &mut vec![],
        &mut changed,
    );
    let mut entries = old.map(read_managed).unwrap_or_default();
    if changed.is_empty() {
        write_managed(new, &entries);
        return;
    }
    let present = set_of(&new_t, &schema);
    let sub_name = (sub == Sub::Status).then(|| "status".to_string());
    let api_version = rt.api_version();
    let mine = |e: &Managed| {
        e.manager == ctx.manager
            && e.operation == "Update"
            && e.sub == sub_name
            && e.api_version == api_version
    };
    for e in entries.iter_mut().filter(|e| !mine(e)) {
        e.set.subtract(&changed);
    }
    match entries.iter_mut().find(|e| mine(e)) {
        Some(e) => {
            e.set.union(&changed);
            e.set = e.set.intersect(&present);
            e.time = ctx.now.clone();
        }
        None => entries.push(Managed {
            manager: ctx.manager.clone(),
            operation: "Update".into(),
            api_version,
            time: ctx.now.clone(),
            sub: sub_name,
            set: changed.intersect(&present),
        }),
    }
    write_managed(new, &entries);
}

// ---------------------------------------------------------------------------------------------
// preparation shared by writes

/// Kind-specific work before any write: defaults, pruning, validation and allocations.
fn prepare(
    st: &mut State,
    rt: &ResourceType,
    obj: &mut Value,
    old: Option<&Value>,
    strict: bool,
) -> Result<(), ApiError> {
    let name = meta_str(obj, "name").to_string();
    if rt.custom {
        if let Some(s) = rt.schema.clone() {
            let unknown = if strict {
                schema::unknown_fields(obj, &s)
            } else {
                vec![]
            };
            if !unknown.is_empty() {
                let each: Vec<String> = unknown
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "strict decoding error: {}",
                    each.join(", ")
                )));
            }
            schema::prune(obj, &s);
            schema::apply_defaults(obj, &s);
            let mut errs = vec![];
            schema::validate(obj, &s, "", &mut errs);
            if !errs.is_empty() {
                return Err(ApiError::invalid(&rt.group, &rt.kind, &name, errs));
            }
        }
        return Ok(());
    }
    defaults::apply(&rt.plural, obj);
    let mut errs = vec![];
    match rt.plural.as_str() {
        "secrets" => {
            if let Some(Value::Object(sd)) =
                obj.as_object_mut().and_then(|m| m.remove("stringData"))
            {
                let data = obj["data"].as_object().cloned().unwrap_or_default();
                let mut data = data;
                for (k, v) in sd {
                    let s = v.as_str().unwrap_or_default();
                    data.insert(
                        k,
                        json!(base64::engine::general_purpose::STANDARD.encode(s)),
                    );
                }
                obj["data"] = Value::Object(data);
            }
        }
        "services" => {
            let spec = &mut obj["spec"];
            if let Some(old_ip) = old
                .and_then(|o| o["spec"].get("clusterIP"))
                .filter(|v| v.is_string())
                && spec.get("clusterIP").is_none_or(Value::is_null)
            {
                spec["clusterIP"] = old_ip.clone();
            }
            if spec["type"] != "ExternalName"
                && spec.get("clusterIP").is_none_or(|v| v.is_null() || v == "")
            {
                st.next_ip += 1;
                let n = st.next_ip;
                spec["clusterIP"] = json!(format!("10.96.{}.{}", (n >> 8) & 0xff, n & 0xff));
            }
            if spec["clusterIP"].is_string() && spec.get("clusterIPs").is_none_or(Value::is_null) {
                spec["clusterIPs"] = json!([spec["clusterIP"].clone()]);
            }
            if spec["type"] == "NodePort" || spec["type"] == "LoadBalancer" {
                for p in spec["ports"].as_array_mut().into_iter().flatten() {
                    if p.get("nodePort").is_none() {
                        st.next_ip += 1;
                        p["nodePort"] = json!(30000 + st.next_ip % 2768);
                    }
                }
            }
            for (i, p) in spec["ports"].as_array().into_iter().flatten().enumerate() {
                if p.get("port")
                    .and_then(Value::as_i64)
                    .is_none_or(|n| !(1..=65535).contains(&n))
                {
                    errs.push(FieldError::new(
                        format!("spec.ports[{i}].port"),
                        FieldErrorKind::Required,
                    ));
                }
            }
        }
        "namespaces" => {
            let labels = meta_mut(obj).entry("labels").or_insert_with(|| json!({}));
            labels["kubernetes.io/metadata.name"] = json!(name);
        }
        "deployments" | "replicasets" | "daemonsets" | "statefulsets" => {
            if rt.plural == "statefulsets"
                && let Some(old) = old
            {
                statefulset_update_forbidden(old, obj, &mut errs);
            }
            let spec = &obj["spec"];
            if spec["selector"].is_null() {
                errs.push(FieldError::new("spec.selector", FieldErrorKind::Required));
            } else if let Some(sel) = spec["selector"]["matchLabels"].as_object() {
                let labels = &spec["template"]["metadata"]["labels"];
                if sel.iter().any(|(k, v)| labels.get(k) != Some(v)) {
                    errs.push(FieldError::new(
                        "spec.template.metadata.labels",
                        FieldErrorKind::Invalid(
                            labels.clone(),
                            "`selector` does not match template `labels`".into(),
                        ),
                    ));
                }
            }
            if spec["template"]["spec"]["containers"]
                .as_array()
                .is_none_or(Vec::is_empty)
            {
                errs.push(FieldError::new(
                    "spec.template.spec.containers",
                    FieldErrorKind::Required,
                ));
            }
            if spec["replicas"].as_i64().is_some_and(|r| r < 0) {
                errs.push(FieldError::new(
                    "spec.replicas",
                    FieldErrorKind::Invalid(
                        spec["replicas"].clone(),
                        "must be greater than or equal to 0".into(),
                    ),
                ));
            }
        }
        "pods"
            if obj["spec"]["containers"]
                .as_array()
                .is_none_or(Vec::is_empty) =>
        {
            errs.push(FieldError::new("spec.containers", FieldErrorKind::Required));
        }
        "customresourcedefinitions" => validate_crd(obj, &mut errs),
        "leases" if rt.group == "coordination.k8s.io" => super::lease::prepare(obj)?,
        _ => {}
    }
    if !errs.is_empty() {
        return Err(ApiError::invalid(&rt.group, &rt.kind, &name, errs));
    }
    Ok(())
}

/// `ValidateStatefulSetUpdate`: only replicas, template, updateStrategy,
/// persistentVolumeClaimRetentionPolicy and minReadySeconds may change (the message is 1.24's).
fn statefulset_update_forbidden(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    let rest = |v: &Value| {
        let mut spec = v["spec"].clone();
        if let Some(m) = spec.as_object_mut() {
            for key in [
                "replicas",
                "template",
                "updateStrategy",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
            ] {
                m.remove(key);
            }
        }
        spec
    };
    if rest(old) != rest(new) {
        errs.push(FieldError::new(
            "spec",
            FieldErrorKind::Forbidden(
                "updates to statefulset spec for fields other than 'replicas', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden".into(),
            ),
        ));
    }
}

fn validate_crd(crd: &mut Value, errs: &mut Vec<FieldError>) {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    let name = meta_str(crd, "name");
    if name != format!("{plural}.{group}") {
        errs.push(FieldError::new(
            "metadata.name",
            FieldErrorKind::Invalid(
                json!(name),
                "must be spec.names.plural+\".\"+spec.group".into(),
            ),
        ));
    }
    if spec["names"]["kind"].as_str().is_none_or(str::is_empty) {
        errs.push(FieldError::new("spec.names.kind", FieldErrorKind::Required));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        errs.push(FieldError::new("spec.versions", FieldErrorKind::Required));
    }
    for (i, v) in versions.iter().enumerate() {
        if let Some(schema) = v.pointer("/schema/openAPIV3Schema") {
            errs.extend(super::schema::structural_errors(
                schema,
                &format!("spec.versions[{i}].schema.openAPIV3Schema"),
            ));
        }
    }
    if versions.iter().filter(|v| v["storage"] == true).count() != 1 {
        errs.push(FieldError::new(
            "spec.versions",
            FieldErrorKind::Invalid(
                json!(versions.len()),
                "must have exactly one version marked as storage version".into(),
            ),
        ));
    }
}

/// The status a kind starts with, whatever the create request said.
fn initial_status(rt: &ResourceType, obj: &mut Value) {
    if !rt.status {
        return;
    }
    let m = match obj.as_object_mut() {
        Some(m) => m,
        None => return,
    };
    if rt.custom {
        m.remove("status");
        return;
    }
    let status = match rt.plural.as_str() {
        "pods" => {
            let qos = if m["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| {
                    c.get("resources")
                        .is_some_and(|r| r.get("limits").is_some() || r.get("requests").is_some())
                }) {
                "Burstable"
            } else {
                "BestEffort"
            };
            json!({"phase": "Pending", "qosClass": qos})
        }
        "services" => json!({"loadBalancer": {}}),
        "namespaces" => json!({"phase": "Active"}),
        "customresourcedefinitions" | "nodes" => m.get("status").cloned().unwrap_or(json!({})),
        _ => json!({}),
    };
    m.insert("status".into(), status);
}

/// What the object looks like apart from resourceVersion and managedFields times: equal means no-op.
fn comparable(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        if let Some(Value::Array(mf)) = m.get_mut("managedFields") {
            for e in mf {
                if let Some(e) = e.as_object_mut() {
                    e.remove("time");
                }
            }
        }
    }
    v
}

/// The object without metadata (and status where it has its own subresource), for generation.
fn spec_part(obj: &Value, rt: &ResourceType) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        if rt.status {
            m.remove("status");
        }
    }
    v
}

// ---------------------------------------------------------------------------------------------
// create

/// Checks a namespaced write may go into `ns`.
fn check_namespace(st: &State, rt: &ResourceType, ns: &str, name: &str) -> Result<(), ApiError> {
    if !rt.namespaced {
        return Ok(());
    }
    match st.get(&("".into(), "namespaces".into()), "", ns) {
        None => Err(ApiError::not_found("", "namespaces", ns)),
        Some(n) if !n["metadata"]["deletionTimestamp"].is_null() => Err(ApiError::forbidden(
            &rt.group,
            &rt.plural,
            name,
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        )),
        Some(_) => Ok(()),
    }
}

fn check_type(rt: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    if let Some(av) = obj["apiVersion"].as_str()
        && av != rt.api_version()
        && !(rt.custom && av.split('/').next() == Some(rt.group.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            rt.api_version()
        )));
    }
    if let Some(k) = obj["kind"].as_str()
        && !k.is_empty()
        && k != rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            rt.kind
        )));
    }
    obj["apiVersion"] = json!(rt.api_version());
    obj["kind"] = json!(rt.kind);
    Ok(())
}

/// Creates an object (POST). `ns` is empty for cluster-scoped kinds.
pub fn create(
    st: &mut State,
    rt: &ResourceType,
    ns: &str,
    body: Value,
    ctx: &Ctx,
) -> Result<Value, ApiError> {
    create_with(st, rt, ns, body, ctx, None)
}

fn create_with(
    st: &mut State,
    rt: &ResourceType,
    ns: &str,
    mut obj: Value,
    ctx: &Ctx,
    applied: Option<Managed>,
) -> Result<Value, ApiError> {
    check_type(rt, &mut obj)?;
    let meta = meta_mut(&mut obj);
    if meta
        .get("resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        return Err(ApiError::bad_request(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    let mut name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        match meta.get("generateName").and_then(Value::as_str) {
            Some(g) if !g.is_empty() => name = format!("{g}{}", random_suffix(5)),
            _ => {
                return Err(ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    "",
                    vec![FieldError::new("metadata.name", FieldErrorKind::Required)],
                ));
            }
        }
    }
    meta.insert("name".into(), json!(name));
    if rt.namespaced {
        match meta.get("namespace").and_then(Value::as_str) {
            Some(n) if !n.is_empty() && n != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                meta.insert("namespace".into(), json!(ns));
            }
        }
    } else {
        meta.remove("namespace");
    }
    for f in SYSTEM_META {
        meta.remove(f);
    }
    meta.insert("uid".into(), json!(new_uid()));
    meta.insert("creationTimestamp".into(), json!(ctx.now));
    if rt.tracks_generation() {
        meta.insert("generation".into(), json!(1));
    }
    let ns_key = if rt.namespaced { ns } else { "" };
    if !(valid_name(&name) || rt.plural == "events" || rt.plural == "nodes") {
        return Err(ApiError::invalid(
            &rt.group,
            &rt.kind,
            &name,
            vec![FieldError::new(
                "metadata.name",
                FieldErrorKind::Invalid(
                    json!(name),
                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character".into(),
                ),
            )],
        ));
    }
    check_namespace(st, rt, ns_key, &name)?;
    initial_status(rt, &mut obj);
    prepare(st, rt, &mut obj, None, ctx.strict)?;
    if st.get(&rt.gr(), ns_key, &name).is_some() {
        return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
    }
    if rt.plural == "customresourcedefinitions" {
        crd_status(&mut obj);
    }
    if rt.plural == "pods"
        && st.settings.kubelet
        && obj["spec"]["nodeName"].as_str().is_none_or(str::is_empty)
    {
        let node = st
            .list(&("".into(), "nodes".into()), None)
            .first()
            .map(|n| meta_str(n, "name").to_string())
            .unwrap_or_else(|| "serin-control-plane".into());
        obj["spec"]["nodeName"] = json!(node);
    }
    match applied {
        Some(entry) => write_managed(&mut obj, &[entry]),
        None => track_update(None, &mut obj, rt, Sub::Main, ctx),
    }
    if ctx.dry_run {
        return Ok(obj);
    }
    let stored = st.commit(&rt.gr(), obj, EventKind::Added);
    after_create(st, rt, &stored, ctx);
    Ok((*stored).clone())
}

fn crd_status(crd: &mut Value) {
    let names = crd["spec"]["names"].clone();
    let mut accepted = names.clone();
    if accepted.get("singular").is_none() {
        accepted["singular"] = json!(names["kind"].as_str().unwrap_or_default().to_lowercase());
    }
    if accepted.get("listKind").is_none() {
        accepted["listKind"] = json!(format!(
            "{}List",
            names["kind"].as_str().unwrap_or_default()
        ));
    }
    let stored: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"] == true)
        .map(|v| v["name"].clone())
        .collect();
    let now = crd["metadata"]["creationTimestamp"].clone();
    crd["status"] = json!({
        "acceptedNames": accepted,
        "storedVersions": stored,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now}
        ]
    });
}

/// What a real cluster does right after a create: namespace contents, CRD serving, the kubelet.
fn after_create(st: &mut State, rt: &ResourceType, obj: &Value, ctx: &Ctx) {
    let name = meta_str(obj, "name").to_string();
    let sys = Ctx {
        manager: "kube-controller-manager".into(),
        dry_run: false,
        now: ctx.now.clone(),
        strict: false,
    };
    match rt.plural.as_str() {
        "namespaces" => {
            if let Some(cm) = st.registry.get("", "v1", "configmaps") {
                let body = json!({"metadata": {"name": "kube-root-ca.crt",
                    "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                    "data": {"ca.crt": FAKE_CA}});
                let _ = create(st, &cm, &name, body, &sys);
            }
            if let Some(sa) = st.registry.get("", "v1", "serviceaccounts") {
                let _ = create(
                    st,
                    &sa,
                    &name,
                    json!({"metadata": {"name": "default"}}),
                    &sys,
                );
            }
        }
        "customresourcedefinitions" => st.registry.register_crd(obj),
        "pods" if st.settings.kubelet => {
            let mut pod = obj.clone();
            st.next_ip += 1;
            let n = st.next_ip;
            let ip = format!("10.244.{}.{}", (n >> 8) & 0xff, n & 0xff);
            let conds: Vec<Value> = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
                .iter()
                .map(|t| json!({"type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": ctx.now}))
                .collect();
            let statuses: Vec<Value> = pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": true, "started": true,
                    "restartCount": 0, "state": {"running": {"startedAt": ctx.now}}}))
                .collect();
            pod["status"] = json!({
                "phase": "Running", "conditions": conds, "hostIP": "172.18.0.2", "hostIPs": [{"ip": "172.18.0.2"}],
                "podIP": ip, "podIPs": [{"ip": ip}], "startTime": ctx.now, "containerStatuses": statuses,
                "qosClass": obj["status"]["qosClass"],
            });
            let kubelet = Ctx {
                manager: "kubelet".into(),
                dry_run: false,
                now: ctx.now.clone(),
                strict: false,
            };
            let old = Arc::new(obj.clone());
            let _ = finish_update(st, rt, &old, pod, Sub::Status, &kubelet, None);
        }
        _ => {}
    }
}

/// A placeholder CA bundle for `kube-root-ca.crt` (nothing verifies TLS against this server).
const FAKE_CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIBADAKBggqhkjOPQQDAjAjMSEwHwYDVQQDDBhzZXJpbi1l\nbWJlZGRlZC1jbHVzdGVyLWNhMB4XDTI0MDEwMTAwMDAwMFoXDTM0MDEwMTAwMDAw\nMFowIzEhMB8GA1UEAwwYc2VyaW4tZW1iZWRkZWQtY2x1c3Rlci1jYTBZMBMGByqG\n-----END CERTIFICATE-----\n";

// ---------------------------------------------------------------------------------------------
// update

/// The common end of every write to an existing object: carry server fields, split status,
/// default and validate, bump generation, record managedFields, finish deletions, commit.
fn finish_update(
    st: &mut State,
    rt: &ResourceType,
    old: &Arc<Value>,
    mut new: Value,
    sub: Sub,
    ctx: &Ctx,
    applied: Option<Vec<Managed>>,
) -> Result<Value, ApiError> {
    check_type(rt, &mut new)?;
    let name = meta_str(old, "name").to_string();
    let new_name = meta_str(&new, "name");
    if !new_name.is_empty() && new_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({new_name}) does not match the name on the URL ({name})"
        )));
    }
    if sub == Sub::Status {
        let status = new.get("status").cloned();
        let mut merged = (**old).clone();
        match status {
            Some(s) => merged["status"] = s,
            None => {
                if let Some(m) = merged.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        merged["apiVersion"] = new["apiVersion"].clone();
        new = merged;
    } else if rt.status {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    {
        let old_meta = old["metadata"].as_object().cloned().unwrap_or_default();
        let meta = meta_mut(&mut new);
        for f in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "generation",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
        ] {
            match old_meta.get(f) {
                Some(v) => meta.insert(f.into(), v.clone()),
                None => meta.remove(f),
            };
        }
        meta.remove("selfLink");
    }
    prepare(st, rt, &mut new, Some(old), ctx.strict && sub == Sub::Main)?;
    if old["metadata"]["deletionTimestamp"].is_string() {
        let before = finalizers(old);
        let added: Vec<String> = finalizers(&new)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        if !added.is_empty() {
            return Err(ApiError::invalid(
                &rt.group,
                &rt.kind,
                &name,
                vec![FieldError::new(
                    "metadata.finalizers",
                    FieldErrorKind::Forbidden(format!(
                        "no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                    )),
                )],
            ));
        }
    }
    if rt.tracks_generation() && spec_part(old, rt) != spec_part(&new, rt) {
        let g = old["metadata"]["generation"].as_i64().unwrap_or(0);
        meta_mut(&mut new).insert("generation".into(), json!(g + 1));
    }
    match applied {
        Some(entries) => write_managed(&mut new, &entries),
        None => track_update(Some(old), &mut new, rt, sub, ctx),
    }
    if rt.plural == "customresourcedefinitions" && sub == Sub::Main {
        let created = old["metadata"]["creationTimestamp"].clone();
        new["metadata"]["creationTimestamp"] = created;
        crd_status(&mut new);
    }
    if comparable(old) == comparable(&new) {
        return Ok((**old).clone());
    }
    if ctx.dry_run {
        return Ok(new);
    }
    let deleting = new["metadata"]["deletionTimestamp"].is_string();
    let ns_finalizers = rt.plural == "namespaces"
        && new["spec"]["finalizers"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
    if deleting && finalizers(&new).is_empty() && !ns_finalizers {
        let stored = st.commit(&rt.gr(), new, EventKind::Deleted);
        after_delete(st, rt, &stored);
        return Ok((*stored).clone());
    }
    let stored = st.commit(&rt.gr(), new, EventKind::Modified);
    if rt.plural == "customresourcedefinitions" {
        st.registry.register_crd(&stored);
    }
    if deleting || rt.plural == "namespaces" {
        st.gc_wanted = true;
    }
    Ok((*stored).clone())
}

fn with_version(obj: &Value, rt: &ResourceType) -> Value {
    let mut v = obj.clone();
    v["apiVersion"] = json!(rt.api_version());
    v
}

fn check_rv(rt: &ResourceType, name: &str, old: &Value, new: &Value) -> Result<(), ApiError> {
    match new["metadata"]["resourceVersion"].as_str() {
        Some(rv) if !rv.is_empty() && rv != meta_str(old, "resourceVersion") => {
            Err(ApiError::stale(&rt.group, &rt.plural, name))
        }
        _ => Ok(()),
    }
}

/// Replaces an object (PUT). Returns the object and whether it was created.
pub fn update(
    st: &mut State,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    body: Value,
    sub: Sub,
    ctx: &Ctx,
) -> Result<(Value, bool), ApiError> {
    let Some(old) = st.get(&rt.gr(), ns, name) else {
        if sub == Sub::Main && matches!(rt.plural.as_str(), "leases" | "endpoints" | "events") {
            let mut body = body;
            meta_mut(&mut body).remove("resourceVersion");
            return create(st, rt, ns, body, ctx).map(|v| (v, true));
        }
        return Err(ApiError::not_found(&rt.group, &rt.plural, name));
    };
    check_rv(rt, name, &old, &body)?;
    finish_update(st, rt, &old, body, sub, ctx, None).map(|v| (v, false))
}

/// Patches an object (PATCH) with any of the four patch types; apply may create it.
#[allow(clippy::too_many_arguments)]
pub fn patch(
    st: &mut State,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    ptype: PatchType,
    body: &[u8],
    sub: Sub,
    force: bool,
    ctx: &Ctx,
) -> Result<(Value, bool), ApiError> {
    if ptype == PatchType::Apply {
        return apply(st, rt, ns, name, body, sub, force, ctx);
    }
    if force {
        return Err(ApiError::bad_request(
            "force may only be specified with apply patch",
        ));
    }
    let p: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let Some(old) = st.get(&rt.gr(), ns, name) else {
        return Err(ApiError::not_found(&rt.group, &rt.plural, name));
    };
    let current = with_version(&old, rt);
    let new = match ptype {
        PatchType::Merge => {
            if !p.is_object() {
                return Err(ApiError::bad_request(
                    "json: cannot unmarshal into Go value of type map[string]interface {}",
                ));
            }
            patch::merge_patch(&current, &p)
        }
        PatchType::Json => patch::json_patch(&current, &p).map_err(|e| ApiError {
            code: 422,
            reason: "Invalid",
            message: e,
            details: None,
        })?,
        PatchType::Strategic => {
            if rt.custom {
                return Err(ApiError::unsupported_media_type(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                ));
            }
            patch::strategic_merge(&current, &p, &schema_of(rt)).map_err(ApiError::bad_request)?
        }
        PatchType::Apply => return Err(ApiError::internal("unreachable patch type")),
    };
    check_rv(rt, name, &old, &new)?;
    finish_update(st, rt, &old, new, sub, ctx, None).map(|v| (v, false))
}

/// Server-side apply: merge, conflicts per manager, removal of fields the manager stopped applying.
#[allow(clippy::too_many_arguments)]
fn apply(
    st: &mut State,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    body: &[u8],
    sub: Sub,
    force: bool,
    ctx: &Ctx,
) -> Result<(Value, bool), ApiError> {
    let applied: Value = serde_yaml_ng::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !applied.is_object() {
        return Err(ApiError::bad_request("apply patch must be an object"));
    }
    for f in ["apiVersion", "kind"] {
        if applied[f].as_str().is_none_or(str::is_empty) {
            return Err(ApiError::bad_request(format!("{f} must be set")));
        }
    }
    let applied_name = meta_str(&applied, "name");
    if applied_name.is_empty() {
        return Err(ApiError::bad_request("metadata.name must be set"));
    }
    if applied_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({applied_name}) does not match the name on the URL ({name})"
        )));
    }
    let schema = schema_of(rt);
    let applied_t = tracked(&applied, rt, sub);
    let applied_set = set_of(&applied_t, &schema);
    let sub_name = (sub == Sub::Status).then(|| "status".to_string());
    let entry = Managed {
        manager: ctx.manager.clone(),
        operation: "Apply".into(),
        api_version: rt.api_version(),
        time: ctx.now.clone(),
        sub: sub_name.clone(),
        set: applied_set.clone(),
    };
    let Some(old) = st.get(&rt.gr(), ns, name) else {
        if sub == Sub::Status {
            return Err(ApiError::not_found(&rt.group, &rt.plural, name));
        }
        let mut obj = applied.clone();
        meta_mut(&mut obj).remove("resourceVersion");
        return create_with(st, rt, ns, obj, ctx, Some(entry)).map(|v| (v, true));
    };
    check_rv(rt, name, &old, &applied)?;
    let current = with_version(&old, rt);
    let mut merged = {
        let mut body = applied.clone();
        if let Some(m) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in SYSTEM_META {
                m.remove(f);
            }
        }
        fields::apply_merge(Some(&current), &body, &schema, &mut vec![])
    };
    let mut changed = FieldSet::default();
    fields::diff(
        Some(&tracked(&current, rt, sub)),
        Some(&tracked(&merged, rt, sub)),
        &schema,
        &mut vec![],
        &mut changed,
    );
    let contested = changed.intersect(&applied_set);
    let mut entries = read_managed(&old);
    let is_mine =
        |e: &Managed| e.manager == ctx.manager && e.operation == "Apply" && e.sub == sub_name;
    let mut conflicts = vec![];
    for e in entries
        .iter()
        .filter(|e| e.manager != ctx.manager && e.sub == sub_name)
    {
        for p in e.set.intersect(&contested).members() {
            conflicts.push((
                e.manager.clone(),
                e.api_version.clone(),
                fields::render_path(&p),
            ));
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(ApiError::apply_conflicts(&conflicts));
    }
    if force {
        for e in entries.iter_mut().filter(|e| e.manager != ctx.manager) {
            e.set.subtract(&contested);
        }
    }
    let previous = entries
        .iter()
        .find(|e| is_mine(e))
        .map(|e| e.set.clone())
        .unwrap_or_default();
    let mut dropped = previous;
    dropped.subtract(&applied_set);
    for p in dropped.members() {
        let owned_elsewhere = entries
            .iter()
            .filter(|e| !is_mine(e))
            .any(|e| e.set.touches(&p));
        if !owned_elsewhere {
            fields::remove_path(&mut merged, &p, &schema);
        }
    }
    match entries.iter_mut().find(|e| is_mine(e)) {
        Some(e) => {
            if e.set != applied_set {
                e.time = ctx.now.clone();
            }
            e.set = applied_set;
        }
        None => entries.push(entry),
    }
    finish_update(st, rt, &old, merged, sub, ctx, Some(entries)).map(|v| (v, false))
}

// ---------------------------------------------------------------------------------------------
// scale

fn path_segments(p: &str) -> Vec<&str> {
    p.trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
        .collect()
}

fn get_path<'a>(v: &'a Value, p: &str) -> &'a Value {
    path_segments(p).into_iter().fold(v, |cur, seg| &cur[seg])
}

/// The `autoscaling/v1` Scale of an object.
pub fn scale_of(rt: &ResourceType, obj: &Value) -> Value {
    let Some(sc) = &rt.scale else {
        return Value::Null;
    };
    let selector = match &sc.label_selector {
        Some(p) => get_path(obj, p).clone(),
        None => {
            let ml = obj["spec"]["selector"]["matchLabels"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            json!(
                ml.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        }
    };
    let m = &obj["metadata"];
    let mut status = json!({"replicas": get_path(obj, &sc.status_replicas).as_i64().unwrap_or(0)});
    if selector.as_str().is_some_and(|s| !s.is_empty()) {
        status["selector"] = selector;
    }
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
                     "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"]},
        "spec": {"replicas": get_path(obj, &sc.spec_replicas).as_i64().unwrap_or(0)},
        "status": status,
    })
}

/// Writes a Scale (PUT, or PATCH already applied to the current Scale) back into the object.
pub fn write_scale(
    st: &mut State,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    scale: &Value,
    ctx: &Ctx,
) -> Result<Value, ApiError> {
    let Some(sc) = rt.scale.clone() else {
        return Err(ApiError::not_found_path());
    };
    let Some(old) = st.get(&rt.gr(), ns, name) else {
        return Err(ApiError::not_found(&rt.group, &rt.plural, name));
    };
    check_rv(rt, name, &old, scale)?;
    let Some(replicas) = scale["spec"]["replicas"].as_i64() else {
        return Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            name,
            vec![FieldError::new("spec.replicas", FieldErrorKind::Required)],
        ));
    };
    if replicas < 0 {
        return Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            name,
            vec![FieldError::new(
                "spec.replicas",
                FieldErrorKind::Invalid(
                    json!(replicas),
                    "must be greater than or equal to 0".into(),
                ),
            )],
        ));
    }
    let mut new = with_version(&old, rt);
    let segs = path_segments(&sc.spec_replicas);
    let mut cur = &mut new;
    for seg in &segs {
        if !cur[*seg].is_object() && seg != segs.last().unwrap_or(&"") {
            cur[*seg] = json!({});
        }
        cur = &mut cur[*seg];
    }
    *cur = json!(replicas);
    let out = finish_update(st, rt, &old, new, Sub::Main, ctx, None)?;
    Ok(scale_of(rt, &out))
}

// ---------------------------------------------------------------------------------------------
// delete

/// Options of a delete (from `DeleteOptions` and query parameters).
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    /// `Orphan`, `Background` or `Foreground`.
    pub propagation: Option<String>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
}

/// What a delete did.
#[derive(Debug, Clone)]
pub enum Deleted {
    /// The object is gone; this was its last state.
    Gone(Value),
    /// The object waits for finalizers; this is its state with `deletionTimestamp`.
    Pending(Value),
}

/// Deletes an object, honouring finalizers and the propagation policy.
pub fn delete(
    st: &mut State,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    opts: &DeleteOpts,
    ctx: &Ctx,
) -> Result<Deleted, ApiError> {
    let Some(old) = st.get(&rt.gr(), ns, name) else {
        return Err(ApiError::not_found(&rt.group, &rt.plural, name));
    };
    if let Some(uid) = &opts.uid
        && uid != meta_str(&old, "uid")
    {
        return Err(ApiError::conflict(
            &rt.group,
            &rt.plural,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta_str(&old, "uid")
            ),
        ));
    }
    if let Some(rv) = &opts.resource_version
        && rv != meta_str(&old, "resourceVersion")
    {
        return Err(ApiError::conflict(
            &rt.group,
            &rt.plural,
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                meta_str(&old, "resourceVersion")
            ),
        ));
    }
    let mut fins = finalizers(&old);
    match opts.propagation.as_deref() {
        Some("Foreground") if !fins.iter().any(|f| f == "foregroundDeletion") => {
            fins.push("foregroundDeletion".into())
        }
        Some("Orphan") if !fins.iter().any(|f| f == "orphan") => fins.push("orphan".into()),
        Some("Foreground" | "Orphan" | "Background") | None => {}
        Some(other) => {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                vec![FieldError::new(
                    "propagationPolicy",
                    FieldErrorKind::NotSupported(
                        json!(other),
                        vec!["Foreground".into(), "Background".into(), "Orphan".into()],
                    ),
                )],
            ));
        }
    }
    let ns_finalizers = rt.plural == "namespaces"
        && old["spec"]["finalizers"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
    if fins.is_empty() && !ns_finalizers {
        if ctx.dry_run {
            return Ok(Deleted::Gone((*old).clone()));
        }
        // The DELETED event carries the final state under a fresh resourceVersion.
        let mut last = (*old).clone();
        last["apiVersion"] = json!(rt.api_version());
        let stored = st.commit(&rt.gr(), last, EventKind::Deleted);
        after_delete(st, rt, &stored);
        return Ok(Deleted::Gone((*stored).clone()));
    }
    let mut new = with_version(&old, rt);
    {
        let meta = meta_mut(&mut new);
        meta.insert("finalizers".into(), json!(fins));
        if !meta.contains_key("deletionTimestamp") {
            meta.insert("deletionTimestamp".into(), json!(ctx.now));
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
            if let Some(g) = meta.get("generation").and_then(Value::as_i64) {
                meta.insert("generation".into(), json!(g + 1));
            }
        }
    }
    if rt.plural == "namespaces" {
        new["status"] = json!({"phase": "Terminating"});
    }
    if comparable(&old) == comparable(&new) || ctx.dry_run {
        return Ok(Deleted::Pending(new));
    }
    let stored = st.commit(&rt.gr(), new, EventKind::Modified);
    st.gc_wanted = true;
    Ok(Deleted::Pending((*stored).clone()))
}

/// Work after an object is really gone: CRDs stop serving (and lose their objects), GC runs.
fn after_delete(st: &mut State, rt: &ResourceType, obj: &Value) {
    st.gc_wanted = true;
    if rt.plural == "customresourcedefinitions" {
        let gr: GroupResource = (
            obj["spec"]["group"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            obj["spec"]["names"]["plural"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        for o in st.list(&gr, None) {
            st.commit(&gr, (*o).clone(), EventKind::Deleted);
        }
        st.registry.unregister_crd(obj);
    }
}

/// Removes finalizer `f` from an object (used by garbage collection and namespace cleanup).
pub fn remove_finalizer(
    st: &mut State,
    rt: &ResourceType,
    obj: &Value,
    f: &str,
    ctx: &Ctx,
) -> Result<Value, ApiError> {
    let mut new = with_version(obj, rt);
    let fins: Vec<String> = finalizers(obj).into_iter().filter(|x| x != f).collect();
    meta_mut(&mut new).insert("finalizers".into(), json!(fins));
    if fins.is_empty() {
        meta_mut(&mut new).remove("finalizers");
    }
    let old = Arc::new(obj.clone());
    finish_update(st, rt, &old, new, Sub::Main, ctx, None)
}

/// Writes `new` over `old` as a plain update by a system component (GC, namespace controller).
pub fn system_update(
    st: &mut State,
    rt: &ResourceType,
    old: &Arc<Value>,
    new: Value,
    sub: Sub,
    ctx: &Ctx,
) -> Result<Value, ApiError> {
    finish_update(st, rt, old, new, sub, ctx, None)
}
