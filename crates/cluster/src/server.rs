//! The HTTP front of the embedded API server: routing of Kubernetes paths, discovery, list and
//! watch streaming, request accounting, fault injection and the `/admin` endpoints (network I/O).
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast, mpsc};

use super::accounting::{RequestKey, Requests};
use super::events;
use super::faults::{Effect, Fault, Faults};
use super::ops::{self, Ctx, DeleteOpts, Deleted, Sub};
use super::patch::PatchType;
use super::resources::ResourceType;
use super::selector::{FieldSelector, LabelSelector};
use super::status::{ApiError, FieldError, FieldErrorKind};
use super::store::{Event, EventKind, State, meta_str};
use super::table;

/// The Kubernetes minor version the server reports unless configured otherwise.
pub const KUBE_MINOR: u32 = 34;

/// The first minor version with server-side field validation on by default (beta in 1.25;
/// before, the `ServerSideFieldValidation` gate was off and `fieldValidation` was ignored).
pub const FIELD_VALIDATION_SINCE: u32 = 25;

/// Everything request handlers share.
pub struct Shared {
    /// Objects, history and served kinds.
    pub state: Mutex<State>,
    /// Faults in force.
    pub faults: Faults,
    /// Request counters.
    pub requests: Requests,
    /// Wakes the garbage collector.
    pub gc: Notify,
    /// How often watches with `allowWatchBookmarks` get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// The Kubernetes minor version impersonated.
    pub kube_minor: u32,
    /// `host:port` the server listens on.
    pub address: String,
    /// Ends watch streams on shutdown.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

impl Shared {
    /// Whether the impersonated version has server-side field validation.
    pub fn field_validation(&self) -> bool {
        self.kube_minor >= FIELD_VALIDATION_SINCE
    }

    /// The state, locked.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Now, as Kubernetes writes timestamps.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn json_response(code: u16, v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    bytes_response(code, body, "application/json")
}

fn bytes_response(code: u16, body: Vec<u8>, content_type: &str) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn error_response(e: &ApiError) -> Response {
    let mut r = json_response(e.code, &e.to_status());
    if e.code == 429 {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// A parsed request path.
#[derive(Debug, Clone, PartialEq)]
enum Route {
    /// `/version`, `/api`, `/apis`, `/healthz` and friends.
    NonResource(String),
    /// `/api/v1` or `/apis/<group>/<version>`.
    ResourceList { group: String, version: String },
    /// `/apis/<group>`.
    Group(String),
    /// A resource path.
    Resource {
        group: String,
        version: String,
        ns: Option<String>,
        plural: String,
        name: Option<String>,
        sub: Option<String>,
        legacy_watch: bool,
    },
}

fn parse_route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api"] | ["apis"] => return Some(Route::NonResource(format!("/{}", segs[0]))),
        ["apis", g] => return Some(Route::Group(g.to_string())),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Some(Route::NonResource(path.to_string())),
    };
    let (legacy_watch, rest) = match rest {
        ["watch", r @ ..] => (true, r),
        r => (false, r),
    };
    let (ns, plural, name, sub) = match rest {
        [] => {
            return Some(Route::ResourceList {
                group: group.into(),
                version: version.into(),
            });
        }
        ["namespaces", ns, plural, tail @ ..] => {
            let (name, sub) = match tail {
                [] => (None, None),
                [n] => (Some(n.to_string()), None),
                [n, s] => (Some(n.to_string()), Some(s.to_string())),
                _ => return None,
            };
            (Some(ns.to_string()), plural.to_string(), name, sub)
        }
        [plural, tail @ ..] => {
            let (name, sub) = match tail {
                [] => (None, None),
                [n] => (Some(n.to_string()), None),
                [n, s] => (Some(n.to_string()), Some(s.to_string())),
                _ => return None,
            };
            (None, plural.to_string(), name, sub)
        }
    };
    Some(Route::Resource {
        group: group.into(),
        version: version.into(),
        ns,
        plural,
        name,
        sub,
        legacy_watch,
    })
}

fn query_map(q: Option<&str>) -> HashMap<String, String> {
    url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn truthy(q: &HashMap<String, String>, k: &str) -> bool {
    matches!(q.get(k).map(String::as_str), Some("true" | "1"))
}

fn user_agent(h: &HeaderMap) -> String {
    h.get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn roll() -> f64 {
    (ops::next_random() >> 11) as f64 / (1u64 << 53) as f64
}

/// The single handler behind every path.
pub async fn handle(AxState(sh): AxState<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let q = query_map(parts.uri.query());
    if let Some(admin) = path.strip_prefix("/admin/") {
        let body = axum::body::to_bytes(body, 64 << 20)
            .await
            .unwrap_or_default();
        return admin_endpoint(&sh, &parts.method, admin, &body);
    }
    let Some(route) = parse_route(&path) else {
        return error_response(&ApiError::not_found_path());
    };
    let ua = user_agent(&parts.headers);
    let is_watch = truthy(&q, "watch")
        || matches!(
            route,
            Route::Resource {
                legacy_watch: true,
                ..
            }
        );
    let (verb, key) = describe(&parts.method, &route, is_watch, &ua, &path);
    sh.requests.record(key.clone());
    let write = super::accounting::is_write(&verb).then(|| key.clone());
    let response = answer(&sh, parts, body, route, q, ua, verb, key).await;
    if let Some(key) = write {
        sh.requests.record_write(key, response.status().as_u16());
    }
    response
}

/// Answers a parsed API request: fault injection first, then the route.
#[allow(clippy::too_many_arguments)]
async fn answer(
    sh: &Arc<Shared>,
    parts: axum::http::request::Parts,
    body: Body,
    route: Route,
    q: HashMap<String, String>,
    ua: String,
    verb: String,
    key: RequestKey,
) -> Response {
    if sh.faults.is_paused() {
        sh.faults.wait_resumed().await;
    }
    let effect = sh.faults.effect(&verb, &key.resource, roll());
    if !effect.latency.is_zero() {
        tokio::time::sleep(effect.latency).await;
    }
    if let Some(code) = effect.error {
        let e = match code {
            429 => ApiError::too_many_requests(),
            409 => ApiError::conflict(&key.group, &key.resource, &key.name, "injected conflict"),
            c => ApiError {
                code: c,
                reason: "InternalError",
                message: "injected fault".into(),
                details: None,
            },
        };
        return error_response(&e);
    }
    let body = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(b) => b,
        Err(e) => return error_response(&ApiError::bad_request(format!("reading body: {e}"))),
    };
    let header_text = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (accept, ctype) = (
        header_text(header::ACCEPT),
        header_text(header::CONTENT_TYPE),
    );
    match route {
        Route::NonResource(p) => non_resource(sh, &p, &accept),
        Route::Group(g) => group_endpoint(sh, &g),
        Route::ResourceList { group, version } => resource_list(sh, &group, &version),
        Route::Resource {
            group,
            version,
            ns,
            plural,
            name,
            sub,
            ..
        } => {
            let req = ResourceRequest {
                verb,
                group,
                version,
                ns,
                plural,
                name,
                sub,
                q,
                ua,
                body,
                accept,
                ctype,
                effect,
            };
            match resource(sh, req).await {
                Ok(r) => r,
                Err(e) => error_response(&e),
            }
        }
    }
}

fn describe(
    method: &Method,
    route: &Route,
    watch: bool,
    ua: &str,
    path: &str,
) -> (String, RequestKey) {
    let verb = match (method, route) {
        (&Method::GET, Route::Resource { name: Some(_), .. }) if !watch => "get",
        (&Method::GET, Route::Resource { .. }) if watch => "watch",
        (&Method::GET, Route::Resource { .. }) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, Route::Resource { name: Some(_), .. }) => "delete",
        (&Method::DELETE, _) => "deletecollection",
        _ => "get",
    }
    .to_string();
    let key = match route {
        Route::Resource {
            group,
            ns,
            plural,
            name,
            sub,
            ..
        } => RequestKey {
            verb: verb.clone(),
            group: group.clone(),
            resource: match sub {
                Some(s) => format!("{plural}/{s}"),
                None => plural.clone(),
            },
            namespace: ns.clone().unwrap_or_default(),
            name: name.clone().unwrap_or_default(),
            user_agent: ua.to_string(),
        },
        _ => RequestKey {
            verb: verb.clone(),
            group: String::new(),
            resource: String::new(),
            namespace: String::new(),
            name: path.to_string(),
            user_agent: ua.to_string(),
        },
    };
    (verb, key)
}

fn admin_endpoint(sh: &Shared, method: &Method, path: &str, body: &[u8]) -> Response {
    match (method, path.trim_end_matches('/')) {
        (&Method::GET, "requests") => json_response(
            200,
            &serde_json::to_value(sh.requests.snapshot()).unwrap_or_default(),
        ),
        (&Method::DELETE, "requests") => {
            sh.requests.reset();
            json_response(200, &json!({}))
        }
        (&Method::GET, "writes") => json_response(
            200,
            &serde_json::to_value(sh.requests.writes()).unwrap_or_default(),
        ),
        (&Method::GET, "faults") => json_response(
            200,
            &json!({"faults": sh.faults.list(), "paused": sh.faults.is_paused()}),
        ),
        (&Method::POST, "faults") => match serde_json::from_slice::<Fault>(body) {
            Ok(f) => {
                sh.faults.add(f);
                json_response(200, &json!({"faults": sh.faults.list()}))
            }
            Err(e) => error_response(&ApiError::bad_request(format!("fault: {e}"))),
        },
        (&Method::PUT, "faults") => match serde_json::from_slice::<Vec<Fault>>(body) {
            Ok(f) => {
                sh.faults.set(f);
                json_response(200, &json!({"faults": sh.faults.list()}))
            }
            Err(e) => error_response(&ApiError::bad_request(format!("faults: {e}"))),
        },
        (&Method::DELETE, "faults") => {
            sh.faults.clear();
            json_response(200, &json!({"faults": []}))
        }
        (&Method::POST, "pause") => {
            sh.faults.pause();
            json_response(200, &json!({"paused": true}))
        }
        (&Method::POST, "resume") => {
            sh.faults.resume();
            json_response(200, &json!({"paused": false}))
        }
        _ => error_response(&ApiError::not_found_path()),
    }
}

// ---------------------------------------------------------------------------------------------
// discovery

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn resource_entries(rt: &ResourceType) -> Vec<Value> {
    let mut main = json!({"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
        "kind": rt.kind, "verbs": VERBS});
    if !rt.short_names.is_empty() {
        main["shortNames"] = json!(rt.short_names);
    }
    if !rt.categories.is_empty() {
        main["categories"] = json!(rt.categories);
    }
    let mut out = vec![main];
    if rt.status {
        out.push(json!({"name": format!("{}/status", rt.plural), "singularName": "", "namespaced": rt.namespaced,
            "kind": rt.kind, "verbs": ["get", "patch", "update"]}));
    }
    if rt.scale.is_some() {
        out.push(json!({"name": format!("{}/scale", rt.plural), "singularName": "", "namespaced": rt.namespaced,
            "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
    }
    if rt.plural == "namespaces" {
        out.push(json!({"name": "namespaces/finalize", "singularName": "", "namespaced": false, "kind": "Namespace", "verbs": ["update"]}));
    }
    out
}

fn resource_list(sh: &Shared, group: &str, version: &str) -> Response {
    let st = sh.lock();
    let types = st.registry.in_group_version(group, version);
    if types.is_empty() {
        return error_response(&ApiError::not_found_path());
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let resources: Vec<Value> = types.iter().flat_map(|t| resource_entries(t)).collect();
    json_response(
        200,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

fn group_json(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"name": name, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
}

fn group_endpoint(sh: &Shared, g: &str) -> Response {
    let st = sh.lock();
    match st.registry.groups().into_iter().find(|(n, _)| n == g) {
        Some((n, vs)) => {
            let mut v = group_json(&n, &vs);
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            json_response(200, &v)
        }
        None => error_response(&ApiError::not_found_path()),
    }
}

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

fn aggregated(st: &State, core: bool) -> Value {
    let groups: Vec<(String, Vec<String>)> = if core {
        vec![("".into(), vec!["v1".into()])]
    } else {
        st.registry.groups()
    };
    let items: Vec<Value> = groups
        .iter()
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = st
                        .registry
                        .in_group_version(g, v)
                        .iter()
                        .map(|t| {
                            let kind = json!({"group": g, "version": v, "kind": t.kind});
                            let mut subs = vec![];
                            if t.status {
                                subs.push(json!({"subresource": "status", "responseKind": kind, "verbs": ["get", "patch", "update"]}));
                            }
                            if t.scale.is_some() {
                                subs.push(json!({"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"}, "verbs": ["get", "patch", "update"]}));
                            }
                            let mut r = json!({"resource": t.plural, "responseKind": kind,
                                "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
                                "singularResource": t.singular, "verbs": VERBS});
                            if !t.short_names.is_empty() {
                                r["shortNames"] = json!(t.short_names);
                            }
                            if !t.categories.is_empty() {
                                r["categories"] = json!(t.categories);
                            }
                            if !subs.is_empty() {
                                r["subresources"] = json!(subs);
                            }
                            r
                        })
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": g}, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

fn non_resource(sh: &Shared, path: &str, accept: &str) -> Response {
    let wants_aggregated = accept.contains("as=APIGroupDiscoveryList") && accept.contains("v=v2;");
    match path.trim_end_matches('/') {
        "/api" if wants_aggregated => {
            let body = serde_json::to_vec(&aggregated(&sh.lock(), true)).unwrap_or_default();
            bytes_response(200, body, AGGREGATED)
        }
        "/apis" if wants_aggregated => {
            let body = serde_json::to_vec(&aggregated(&sh.lock(), false)).unwrap_or_default();
            bytes_response(200, body, AGGREGATED)
        }
        "/api" => json_response(
            200,
            &json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": sh.address}]}),
        ),
        "/apis" => {
            let groups: Vec<Value> = sh
                .lock()
                .registry
                .groups()
                .iter()
                .map(|(g, vs)| group_json(g, vs))
                .collect();
            json_response(
                200,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
            )
        }
        "/version" => json_response(
            200,
            &json!({"major": "1", "minor": sh.kube_minor.to_string(),
            "gitVersion": format!("v1.{}.0-serin", sh.kube_minor), "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24.0",
            "compiler": "gc", "platform": "linux/amd64"}),
        ),
        "/healthz" | "/readyz" | "/livez" => {
            bytes_response(200, b"ok".to_vec(), "text/plain; charset=utf-8")
        }
        "/openapi/v2" if accept.contains("protobuf") && !accept.contains("json") => {
            let doc = openapi_v2(sh);
            bytes_response(
                200,
                super::proto::document(&doc),
                "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
            )
        }
        "/openapi/v3" => json_response(200, &openapi_v3_root(&sh.lock())),
        p if p.starts_with("/openapi/v3/") => {
            match openapi_v3_doc(sh, &p["/openapi/v3/".len()..]) {
                Some(doc) => json_response(200, &doc),
                None => error_response(&ApiError::not_found_path()),
            }
        }
        "/openapi/v2" => json_response(200, &openapi_v2(sh)),
        _ => error_response(&ApiError::not_found_path()),
    }
}

/// The write parameters of the impersonated version, as the OpenAPI documents list them:
/// `fieldValidation` only where the server validates fields (1.25+), which is what kubectl looks
/// for to leave validation to the server.
fn write_params(sh: &Shared) -> Vec<&'static str> {
    let mut p = vec!["dryRun", "fieldManager"];
    if sh.field_validation() {
        p.push("fieldValidation");
    }
    p.push("force");
    p
}

/// `/openapi/v2`: every served kind's definition (v2-shaped) and, per kind, the object path's
/// PATCH operation with its GVK and query parameters (what kubectl's v2 parameter check reads).
fn openapi_v2(sh: &Shared) -> Value {
    let types: Vec<Arc<ResourceType>> = sh.lock().registry.all().cloned().collect();
    let params: Vec<Value> = write_params(sh)
        .into_iter()
        .map(|n| json!({"name": n, "in": "query", "type": if n == "force" { "boolean" } else { "string" }}))
        .collect();
    let mut paths = serde_json::Map::new();
    for t in &types {
        let base = if t.group.is_empty() {
            format!("/api/{}", t.version)
        } else {
            format!("/apis/{}/{}", t.group, t.version)
        };
        let path = if t.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
        } else {
            format!("{base}/{}/{{name}}", t.plural)
        };
        paths.insert(
            path,
            json!({"patch": {"operationId": format!("patch{}", t.kind), "parameters": params,
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": {"group": t.group, "version": t.version, "kind": t.kind}}}),
        );
    }
    json!({"swagger": "2.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{}.0", sh.kube_minor)},
        "paths": paths,
        "definitions": super::openapi::v2_definitions(&types)})
}

/// `/openapi/v3`: one document per served group version.
fn openapi_v3_root(st: &State) -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert(
        "api/v1".into(),
        json!({"serverRelativeURL": format!("/openapi/v3/api/v1?hash={}", st.rv)}),
    );
    for (g, vs) in st.registry.groups() {
        for v in vs {
            paths.insert(
                format!("apis/{g}/{v}"),
                json!({"serverRelativeURL": format!("/openapi/v3/apis/{g}/{v}?hash={}", st.rv)}),
            );
        }
    }
    json!({"paths": paths})
}

/// A minimal OpenAPI v3 document of a group version: the object paths with their verbs, the
/// GVK extension and the query parameters, which is what kubectl looks for (`fieldValidation`).
fn openapi_v3_doc(sh: &Shared, gv_path: &str) -> Option<Value> {
    let st = sh.lock();
    let segs: Vec<&str> = gv_path.split('/').collect();
    let (group, version) = match segs.as_slice() {
        ["api", v] => ("", *v),
        ["apis", g, v] => (*g, *v),
        _ => return None,
    };
    let types = st.registry.in_group_version(group, version);
    if types.is_empty() {
        return None;
    }
    let params: Vec<Value> = write_params(sh)
        .into_iter()
        .map(|n| json!({"name": n, "in": "query", "schema": {"type": if n == "force" { "boolean" } else { "string" }}}))
        .collect();
    let components = super::openapi::components(&types);
    let mut paths = serde_json::Map::new();
    for t in &types {
        let base = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let prefix = if t.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("{base}/{}", t.plural)
        };
        let gvk = json!({"group": group, "version": version, "kind": t.kind});
        let def = super::openapi::definition_name(t);
        let ok = if components.contains_key(&def) {
            json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{def}")}}}})
        } else {
            json!({"description": "OK"})
        };
        let op = |action: &str| json!({"x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": {"200": ok}});
        paths.insert(format!("{prefix}/{{name}}"), json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}));
        paths.insert(
            prefix,
            json!({"get": op("list"), "post": op("post"), "delete": op("deletecollection")}),
        );
    }
    Some(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": format!("v1.{}.0", sh.kube_minor)}, "paths": paths, "components": {"schemas": components}}),
    )
}

// ---------------------------------------------------------------------------------------------
// resources

struct ResourceRequest {
    verb: String,
    group: String,
    version: String,
    ns: Option<String>,
    plural: String,
    name: Option<String>,
    sub: Option<String>,
    q: HashMap<String, String>,
    ua: String,
    body: Bytes,
    accept: String,
    ctype: String,
    effect: Effect,
}

/// The field manager of a write: the parameter, else the program name of the User-Agent.
fn manager(q: &HashMap<String, String>, ua: &str) -> String {
    match q.get("fieldManager") {
        Some(m) if !m.is_empty() => m.clone(),
        _ => ua
            .split('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .to_string(),
    }
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the body of the request is empty"));
    }
    serde_json::from_slice(body)
        .or_else(|_| serde_yaml_ng::from_slice(body))
        .map_err(|e| ApiError::bad_request(format!("the object provided is unrecognized: {e}")))
}

fn selectors(
    rt: &ResourceType,
    q: &HashMap<String, String>,
) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let ls = LabelSelector::parse(
        q.get("labelSelector")
            .map(String::as_str)
            .unwrap_or_default(),
    )
    .map_err(ApiError::bad_request)?;
    let fs = FieldSelector::parse(
        q.get("fieldSelector")
            .map(String::as_str)
            .unwrap_or_default(),
        &rt.selectable_fields,
    )
    .map_err(ApiError::bad_request)?;
    let mut fs = fs;
    if events::is_events_view(rt) {
        for r in &mut fs.0 {
            r.path = events::core_field_label(&r.path).to_string();
        }
    }
    Ok((ls, fs))
}

/// Whether a stored object of `rt`'s collection satisfies a field selector (core Events are
/// matched on their selectable field set, whichever API asked).
fn fields_match(fs: &FieldSelector, rt: &ResourceType, obj: &Value) -> bool {
    if fs.0.is_empty() {
        return true;
    }
    if events::is_event_storage(rt) {
        fs.matches_object(&events::selectable(obj))
    } else {
        fs.matches_object(obj)
    }
}

/// A stored object as `rt` serves it, when that differs from the stored form: another version
/// of a custom resource, or a core Event read through `events.k8s.io`.
fn served_as(obj: &Value, rt: &ResourceType) -> Option<Value> {
    if events::is_events_view(rt) {
        return Some(events::from_core(obj));
    }
    (rt.custom && obj["apiVersion"].as_str() != Some(&rt.api_version())).then(|| {
        let mut v = obj.clone();
        v["apiVersion"] = json!(rt.api_version());
        v
    })
}

/// Writes an `events.k8s.io` Event through the core storage: the body (or, for patches, the
/// patched `events.k8s.io` form of the stored object) is converted to core and written as a
/// core Event; the answer is converted back.
fn write_event_view(
    st: &mut State,
    r: &ResourceRequest,
    ns: &str,
    name: &str,
    ctx: &Ctx,
) -> Result<(u16, Value), ApiError> {
    let core = st
        .registry
        .get("", "v1", "events")
        .ok_or_else(ApiError::not_found_path)?;
    let (code, stored) = match r.verb.as_str() {
        "create" => {
            let body = events::to_core(&parse_body(&r.body)?);
            (201, ops::create(st, &core, ns, body, ctx)?)
        }
        "update" => {
            let body = events::to_core(&parse_body(&r.body)?);
            let (v, created) = ops::update(st, &core, ns, name, body, Sub::Main, ctx)?;
            (if created { 201 } else { 200 }, v)
        }
        _ => {
            let ptype = PatchType::from_content_type(&r.ctype)
                .ok_or_else(|| ApiError::unsupported_media_type("unknown patch type"))?;
            if ptype == PatchType::Apply {
                // Applied through the core form: field ownership is tracked on core paths.
                let body = serde_json::to_vec(&events::to_core(&parse_body(&r.body)?))
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                let force = truthy(&r.q, "force");
                let (v, created) =
                    ops::patch(st, &core, ns, name, ptype, &body, Sub::Main, force, ctx)?;
                (if created { 201 } else { 200 }, v)
            } else {
                let old = st
                    .get(&core.gr(), ns, name)
                    .ok_or_else(|| ApiError::not_found("events.k8s.io", "events", name))?;
                let current = events::from_core(&old);
                let p: Value = serde_json::from_slice(&r.body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                let patched = match ptype {
                    PatchType::Json => {
                        super::patch::json_patch(&current, &p).map_err(|e| ApiError {
                            code: 422,
                            reason: "Invalid",
                            message: e,
                            details: None,
                        })?
                    }
                    PatchType::Strategic => {
                        super::patch::strategic_merge(&current, &p, &ops::schema_of(&core))
                            .map_err(ApiError::bad_request)?
                    }
                    _ if !p.is_object() => {
                        return Err(ApiError::bad_request(
                            "json: cannot unmarshal into Go value of type map[string]interface {}",
                        ));
                    }
                    _ => super::patch::merge_patch(&current, &p),
                };
                let (v, _) = ops::update(
                    st,
                    &core,
                    ns,
                    name,
                    events::to_core(&patched),
                    Sub::Main,
                    ctx,
                )?;
                (200, v)
            }
        }
    };
    Ok((code, events::from_core(&stored)))
}

async fn resource(sh: &Arc<Shared>, r: ResourceRequest) -> Result<Response, ApiError> {
    let rt = sh
        .lock()
        .registry
        .get(&r.group, &r.version, &r.plural)
        .ok_or_else(ApiError::not_found_path)?;
    if r.ns.is_some() && !rt.namespaced {
        return Err(ApiError::not_found_path());
    }
    let ns = r.ns.clone().unwrap_or_default();
    let sub = match r.sub.as_deref() {
        None => None,
        Some("status") if rt.status => Some(Sub::Status),
        Some("scale") if rt.scale.is_some() => None,
        Some("finalize") if rt.plural == "namespaces" => None,
        Some(_) => return Err(ApiError::not_found_path()),
    };
    let is_scale = r.sub.as_deref() == Some("scale");
    if rt.namespaced && r.ns.is_none() && !matches!(r.verb.as_str(), "list" | "watch") {
        return Err(ApiError::not_found_path());
    }
    let dry_run = r.q.get("dryRun").is_some_and(|d| d == "All");
    let ctx = Ctx {
        manager: manager(&r.q, &r.ua),
        dry_run,
        now: now(),
        // A 1.24 server ignores the parameter (the feature gate is off).
        strict: sh.field_validation() && r.q.get("fieldValidation").is_some_and(|v| v == "Strict"),
    };
    let name = r.name.clone().unwrap_or_default();
    let sub_or_main = sub.unwrap_or(Sub::Main);
    if events::is_events_view(&rt) && matches!(r.verb.as_str(), "create" | "update" | "patch") {
        if r.verb == "patch"
            && PatchType::from_content_type(&r.ctype) == Some(PatchType::Apply)
            && r.q.get("fieldManager").is_none_or(String::is_empty)
        {
            return Err(apply_needs_a_field_manager());
        }
        let (code, v) = write_event_view(&mut sh.lock(), &r, &ns, &name, &ctx)?;
        return Ok(json_response(code, &v));
    }
    let result = match r.verb.as_str() {
        "get" => {
            let obj = sh
                .lock()
                .get(&rt.gr(), &ns, &name)
                .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, &name))?;
            if is_scale {
                return Ok(json_response(200, &ops::scale_of(&rt, &obj)));
            }
            if table::wanted(&r.accept) {
                let t = table::table(&rt, &[obj], "", &r.q);
                return Ok(json_response(200, &t));
            }
            let body = match served_as(&obj, &rt) {
                Some(v) => serde_json::to_vec(&v),
                None => serde_json::to_vec(&*obj),
            };
            return Ok(bytes_response(
                200,
                body.unwrap_or_default(),
                "application/json",
            ));
        }
        "list" => return list(sh, &rt, r.ns.as_deref(), &r.q, &r.accept),
        "watch" => return watch(sh.clone(), rt, r.ns.clone(), &r.q, r.effect).await,
        "create" => {
            let body = parse_body(&r.body)?;
            let mut st = sh.lock();
            ops::create(&mut st, &rt, &ns, body, &ctx).map(|v| (201, v))
        }
        "update" if is_scale => {
            let body = parse_body(&r.body)?;
            let mut st = sh.lock();
            ops::write_scale(&mut st, &rt, &ns, &name, &body, &ctx).map(|v| (200, v))
        }
        "update" => {
            let body = parse_body(&r.body)?;
            let mut st = sh.lock();
            ops::update(&mut st, &rt, &ns, &name, body, sub_or_main, &ctx)
                .map(|(v, created)| (if created { 201 } else { 200 }, v))
        }
        "patch" => {
            let ptype = PatchType::from_content_type(&r.ctype).ok_or_else(|| {
                ApiError::unsupported_media_type(format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {:?})",
                    r.ctype
                ))
            })?;
            if ptype == PatchType::Apply && r.q.get("fieldManager").is_none_or(String::is_empty) {
                // kube-apiserver's patch handler: apply has no User-Agent fallback.
                return Err(apply_needs_a_field_manager());
            }
            let force = truthy(&r.q, "force");
            let mut st = sh.lock();
            if is_scale {
                let obj = st
                    .get(&rt.gr(), &ns, &name)
                    .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, &name))?;
                let scale = ops::scale_of(&rt, &obj);
                let p: Value = serde_json::from_slice(&r.body)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                let patched = match ptype {
                    PatchType::Json => {
                        super::patch::json_patch(&scale, &p).map_err(ApiError::bad_request)?
                    }
                    _ => super::patch::merge_patch(&scale, &p),
                };
                ops::write_scale(&mut st, &rt, &ns, &name, &patched, &ctx).map(|v| (200, v))
            } else {
                ops::patch(
                    &mut st,
                    &rt,
                    &ns,
                    &name,
                    ptype,
                    &r.body,
                    sub_or_main,
                    force,
                    &ctx,
                )
                .map(|(v, created)| (if created { 201 } else { 200 }, v))
            }
        }
        "delete" => {
            let opts = delete_opts(&r.q, &r.body)?;
            let mut st = sh.lock();
            match ops::delete(&mut st, &rt, &ns, &name, &opts, &ctx)? {
                // As kube-apiserver's delete handler: an object that stays (finalizers, foreground
                // deletion) is answered 200 with its new state; 202 only for the deprecated
                // `orphanDependents: false`.
                Deleted::Pending(v) if orphan_dependents_false(&r.q, &r.body) => Ok((202, v)),
                Deleted::Pending(v) => Ok((200, v)),
                Deleted::Gone(v) if rt.returns_deleted_object() => Ok((200, v)),
                Deleted::Gone(v) => Ok((
                    200,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": name, "group": rt.group, "kind": rt.plural, "uid": v["metadata"]["uid"]}}),
                )),
            }
        }
        "deletecollection" => {
            let opts = delete_opts(&r.q, &r.body)?;
            let (ls, fs) = selectors(&rt, &r.q)?;
            let mut st = sh.lock();
            let victims: Vec<Arc<Value>> = st
                .list(&rt.gr(), r.ns.as_deref())
                .into_iter()
                .filter(|o| ls.matches_object(o) && fields_match(&fs, &rt, o))
                .collect();
            let mut items = vec![];
            for v in victims {
                if let Ok(Deleted::Gone(o) | Deleted::Pending(o)) = ops::delete(
                    &mut st,
                    &rt,
                    meta_str(&v, "namespace"),
                    meta_str(&v, "name"),
                    &opts,
                    &ctx,
                ) {
                    items.push(o);
                }
            }
            let rv = st.rv.to_string();
            Ok((
                200,
                json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": {"resourceVersion": rv}, "items": items}),
            ))
        }
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    };
    if sh.lock().gc_wanted {
        sh.gc.notify_one();
    }
    let (code, v) = result?;
    let v = match served_as(&v, &rt) {
        Some(served) if v["kind"] == "Event" => served,
        _ => v,
    };
    Ok(json_response(code, &v))
}

/// Whether a delete asked for the deprecated `orphanDependents: false` (body or query).
fn orphan_dependents_false(q: &HashMap<String, String>, body: &[u8]) -> bool {
    let in_body = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|b| b.get("orphanDependents").and_then(Value::as_bool));
    in_body == Some(false) || q.get("orphanDependents").is_some_and(|v| v == "false")
}

fn delete_opts(q: &HashMap<String, String>, body: &[u8]) -> Result<DeleteOpts, ApiError> {
    let b: Value = if body.is_empty() {
        json!({})
    } else {
        parse_body(body)?
    };
    Ok(DeleteOpts {
        propagation: b["propagationPolicy"]
            .as_str()
            .map(String::from)
            .or_else(|| q.get("propagationPolicy").cloned()),
        uid: b["preconditions"]["uid"].as_str().map(String::from),
        resource_version: b["preconditions"]["resourceVersion"]
            .as_str()
            .map(String::from),
    })
}

fn list(
    sh: &Shared,
    rt: &ResourceType,
    ns: Option<&str>,
    q: &HashMap<String, String>,
    accept: &str,
) -> Result<Response, ApiError> {
    let (ls, fs) = selectors(rt, q)?;
    let (items, rv) = {
        let st = sh.lock();
        let items: Vec<Arc<Value>> = match fs.name() {
            Some(n) => st
                .get(&rt.gr(), ns.unwrap_or_default(), n)
                .into_iter()
                .filter(|_| ns.is_some() || !rt.namespaced)
                .collect(),
            None => st.list(&rt.gr(), ns),
        };
        let items = if items.is_empty() && fs.name().is_some() && ns.is_none() {
            st.list(&rt.gr(), None)
        } else {
            items
        };
        (items, st.rv)
    };
    let items: Vec<Arc<Value>> = items
        .into_iter()
        .filter(|o| ls.matches_object(o) && fields_match(&fs, rt, o))
        .collect();
    if table::wanted(accept) {
        return Ok(json_response(
            200,
            &table::table(rt, &items, &rv.to_string(), q),
        ));
    }
    let mut buf = Vec::with_capacity(items.len() * 1024 + 256);
    buf.extend_from_slice(
        format!(
            "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":{{\"resourceVersion\":\"{rv}\"}},\"items\":[",
            rt.kind,
            rt.api_version()
        )
        .as_bytes(),
    );
    for (i, o) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        let r = match served_as(o, rt) {
            Some(v) => serde_json::to_writer(&mut buf, &v),
            None => serde_json::to_writer(&mut buf, &**o),
        };
        r.map_err(|e| ApiError::internal(e.to_string()))?;
    }
    buf.extend_from_slice(b"]}");
    Ok(bytes_response(200, buf, "application/json"))
}

// ---------------------------------------------------------------------------------------------
// watch

struct WatchFilter {
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    rt: Arc<ResourceType>,
}

impl WatchFilter {
    fn matches(&self, o: &Value) -> bool {
        self.ns
            .as_deref()
            .is_none_or(|n| meta_str(o, "namespace") == n)
            && self.labels.matches_object(o)
            && fields_match(&self.fields, &self.rt, o)
    }

    /// The event type a watcher with this filter sees, if any (selector transitions included).
    fn translate(&self, e: &Event) -> Option<&'static str> {
        let now = self.matches(&e.object);
        match e.kind {
            EventKind::Added => now.then_some("ADDED"),
            EventKind::Deleted => now.then_some("DELETED"),
            EventKind::Modified => {
                let before = e.prev.as_ref().is_some_and(|p| self.matches(p));
                match (before, now) {
                    (true, true) => Some("MODIFIED"),
                    (false, true) => Some("ADDED"),
                    (true, false) => Some("DELETED"),
                    (false, false) => None,
                }
            }
        }
    }
}

fn event_line(kind: &str, obj: &Value, rt: &ResourceType) -> Bytes {
    let mut buf = Vec::with_capacity(1024);
    buf.extend_from_slice(format!("{{\"type\":\"{kind}\",\"object\":").as_bytes());
    let r = match served_as(obj, rt) {
        Some(v) => serde_json::to_writer(&mut buf, &v),
        None => serde_json::to_writer(&mut buf, obj),
    };
    if r.is_err() {
        buf.extend_from_slice(b"null");
    }
    buf.extend_from_slice(b"}\n");
    Bytes::from(buf)
}

fn bookmark(rt: &ResourceType, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let v = json!({"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": meta}});
    let mut b = serde_json::to_vec(&v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

fn error_line(e: &ApiError) -> Bytes {
    let mut b =
        serde_json::to_vec(&json!({"type": "ERROR", "object": e.to_status()})).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

async fn watch(
    sh: Arc<Shared>,
    rt: Arc<ResourceType>,
    ns: Option<String>,
    q: &HashMap<String, String>,
    effect: Effect,
) -> Result<Response, ApiError> {
    let (labels, fields) = selectors(&rt, q)?;
    let filter = WatchFilter {
        ns,
        labels,
        fields,
        rt: rt.clone(),
    };
    let from = match q.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(s) => Some(
            s.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s}")))?,
        ),
    };
    let send_initial = truthy(q, "sendInitialEvents");
    let bookmarks = truthy(q, "allowWatchBookmarks");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let timeout = effect.close_watch_after.map_or(timeout, |c| c.min(timeout));
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    }));
    let response = {
        let mut r = Response::new(body);
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    if effect.watch_gone {
        let current = sh.lock().rv;
        let _ = tx
            .send(error_line(&ApiError::gone(from.unwrap_or(0), current)))
            .await;
        return Ok(response.into_response());
    }
    // Under one lock: the starting events and the subscription, so nothing is missed or doubled.
    type Start = (Vec<Bytes>, broadcast::Receiver<Arc<Event>>, u64);
    let start: Result<Start, ApiError> = {
        let st = sh.lock();
        match from {
            Some(rv) if !send_initial => st.watch_from(&rt.gr(), rv).map(|(backlog, rx)| {
                let lines = backlog
                    .iter()
                    .filter_map(|e| filter.translate(e).map(|k| event_line(k, &e.object, &rt)))
                    .collect();
                (lines, rx, st.rv.max(rv))
            }),
            _ => {
                let lines = st
                    .list(&rt.gr(), filter.ns.as_deref())
                    .iter()
                    .filter(|o| filter.matches(o))
                    .map(|o| event_line("ADDED", o, &rt))
                    .collect();
                Ok((lines, st.subscribe(), st.rv))
            }
        }
    };
    let (initial, mut events, mut last_rv) = match start {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(error_line(&e)).await;
            return Ok(response.into_response());
        }
    };
    let interval = sh.bookmark_interval;
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut shutdown = sh.shutdown.clone();
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        if send_initial && tx.send(bookmark(&rt, last_rv, true)).await.is_err() {
            return;
        }
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = shutdown.changed() => return,
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(bookmark(&rt, last_rv, false)).await.is_err() {
                        return;
                    }
                }
                ev = events.recv() => {
                    let ev = match ev {
                        Ok(ev) => ev,
                        // A watcher that falls behind is cut off, as the real server does; it resumes
                        // from its last resourceVersion.
                        Err(_) => return,
                    };
                    if sh.faults.is_paused() {
                        sh.faults.wait_resumed().await;
                    }
                    last_rv = last_rv.max(ev.rv);
                    if ev.gr != rt.gr() {
                        continue;
                    }
                    if let Some(kind) = filter.translate(&ev)
                        && tx.send(event_line(kind, &ev.object, &rt)).await.is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    Ok(response.into_response())
}

/// kube-apiserver's answer to an apply patch without `fieldManager` (apply has no User-Agent
/// fallback).
fn apply_needs_a_field_manager() -> ApiError {
    ApiError::invalid(
        "meta.k8s.io",
        "PatchOptions",
        "",
        vec![FieldError::new(
            "fieldManager",
            FieldErrorKind::RequiredBecause("is required for apply patch".into()),
        )],
    )
}
