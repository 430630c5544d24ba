//! The App Mesh routers (`appmesh` = `appmesh.k8s.aws/v1beta1`, `appmesh:v1beta2`).
//!
//! v1beta2 (AWS App Mesh controller): VirtualNodes `<svc>-primary` / `<svc>-canary`,
//! VirtualRouters `<svc>` and `<svc>-canary` whose routes carry the weighted targets, and a
//! VirtualService of the same name in front of each router. v1beta1 (the legacy controller):
//! VirtualNodes `<svc>`, `<svc>-primary`, `<svc>-canary` and VirtualServices `<svc>.<ns>` and
//! `<svc>-canary.<ns>` that embed their router and routes. A/B testing uses two prioritised
//! routes `<svc>-a` (header matches, weighted) and `<svc>-b` (everyone else, primary).
//!
//! Pure builders compute the objects Flagger writes; [`AppMeshRouter`] reads the Services (for
//! the pod selectors) and applies the objects (API I/O).
use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Error, INITIAL, Meta, TrafficRouter, object};
use crate::api::Canary;
use crate::api::duration::parse_duration;
use crate::core::Routes;

/// The Canary annotation that turns on Envoy access logs in the VirtualNodes.
pub const ACCESS_LOG_ANNOTATION: &str = "appmesh.flagger.app/accesslog";

/// Which App Mesh API the router writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// `appmesh.k8s.aws/v1beta1` (provider `appmesh`): needs `service.meshName`.
    V1beta1,
    /// `appmesh.k8s.aws/v1beta2` (provider `appmesh:v1beta2`): the mesh comes from the
    /// namespace's mesh selector.
    V1beta2,
}

impl Version {
    /// The apiVersion.
    pub fn api_version(self) -> &'static str {
        match self {
            Self::V1beta1 => "appmesh.k8s.aws/v1beta1",
            Self::V1beta2 => "appmesh.k8s.aws/v1beta2",
        }
    }
}

/// `grpc` when the port name says so, else `http`.
fn protocol(canary: &Canary) -> &'static str {
    let name = canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.port_name.as_deref())
        .unwrap_or_default();
    if name.contains("grpc") {
        "grpc"
    } else {
        "http"
    }
}

/// v1beta2 listens on the container port: a numeric `targetPort`, else the Service port.
fn container_port(canary: &Canary) -> i32 {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.target_port.as_ref())
    {
        Some(IntOrString::Int(p)) if *p > 0 => *p,
        _ => super::service_port(canary),
    }
}

fn ms(d: &str) -> Option<i64> {
    parse_duration(d).ok().map(|d| d.as_millis() as i64)
}

fn timeout(canary: &Canary) -> Option<Value> {
    let t = canary.spec.service.as_ref()?.timeout.as_deref()?;
    ms(t).map(|v| json!({"perRequest": {"unit": "ms", "value": v}}))
}

/// Flagger's retry policy: one retry on `gateway-error` after 250ms unless said otherwise.
fn retry_policy(canary: &Canary, version: Version) -> Value {
    let Some(r) = canary
        .spec
        .service
        .as_ref()
        .and_then(|s| s.retries.as_ref())
    else {
        return Value::Null;
    };
    let per_try = r.per_try_timeout.as_deref().and_then(ms).unwrap_or(250);
    let attempts = r.attempts.filter(|a| *a > 0).unwrap_or(1);
    let events: Vec<String> = match r.retry_on.as_deref().filter(|s| !s.is_empty()) {
        Some(on) => on.split(',').map(str::to_string).collect(),
        None => vec!["gateway-error".into()],
    };
    match version {
        Version::V1beta1 => json!({
            "perRetryTimeoutMillis": per_try, "maxRetries": attempts, "httpRetryEvents": events,
        }),
        Version::V1beta2 => json!({
            "perRetryTimeout": {"unit": "ms", "value": per_try}, "maxRetries": attempts,
            "httpRetryEvents": events,
        }),
    }
}

/// The A/B header matches of every `analysis.match` entry (App Mesh ANDs them).
fn headers(canary: &Canary) -> Vec<Value> {
    let s = |v: &Option<String>| {
        v.clone()
            .filter(|v| !v.is_empty())
            .map(Value::from)
            .unwrap_or(Value::Null)
    };
    canary
        .spec
        .ab_matches()
        .iter()
        .flat_map(|m| m.headers.iter().flatten())
        .map(|(name, sm)| {
            json!({"name": name, "match": object([
                ("exact", s(&sm.exact)), ("prefix", s(&sm.prefix)),
                ("regex", s(&sm.regex)), ("suffix", s(&sm.suffix)),
            ])})
        })
        .collect()
}

fn target(version: Version, node: &str, weight: i32) -> Value {
    match version {
        Version::V1beta1 => json!({"virtualNodeName": node, "weight": weight}),
        Version::V1beta2 => json!({"virtualNodeRef": {"name": node}, "weight": weight}),
    }
}

fn http_route(
    canary: &Canary,
    version: Version,
    headers: Vec<Value>,
    targets: Vec<Value>,
) -> Value {
    let m = object([
        ("prefix", json!(super::uri_prefix(canary))),
        (
            "headers",
            if headers.is_empty() {
                Value::Null
            } else {
                Value::Array(headers)
            },
        ),
    ]);
    let t = match version {
        Version::V1beta1 => Value::Null,
        Version::V1beta2 => timeout(canary).unwrap_or(Value::Null),
    };
    object([
        ("match", m),
        ("timeout", t),
        ("retryPolicy", retry_policy(canary, version)),
        ("action", json!({"weightedTargets": targets})),
    ])
}

fn named_route(version: Version, name: &str, priority: Option<i32>, http: Value) -> Value {
    let key = match version {
        Version::V1beta1 => "http",
        Version::V1beta2 => "httpRoute",
    };
    let mut r = json!({"name": name});
    r[key] = http;
    if let Some(p) = priority {
        r["priority"] = json!(p);
    }
    r
}

/// The routes of a router. The apex router (`for_canary == false`) carries the split, or the
/// A/B pair `<svc>-a` / `<svc>-b`; the canary router always sends everything to the canary.
pub fn mesh_routes(
    canary: &Canary,
    version: Version,
    split: Routes,
    for_canary: bool,
) -> Vec<Value> {
    let (apex, primary, canary_node) = super::service_names(canary);
    let split = if for_canary {
        Routes::split(0, 100)
    } else {
        split
    };
    let weighted = vec![
        target(version, &canary_node, split.canary),
        target(version, &primary, split.primary),
    ];
    if super::is_ab(canary) && !for_canary {
        return vec![
            named_route(
                version,
                &format!("{apex}-a"),
                Some(10),
                http_route(canary, version, headers(canary), weighted),
            ),
            named_route(
                version,
                &format!("{apex}-b"),
                Some(20),
                http_route(
                    canary,
                    version,
                    vec![],
                    vec![target(version, &primary, 100)],
                ),
            ),
        ];
    }
    let name = if for_canary { canary_node } else { apex };
    vec![named_route(
        version,
        &name,
        None,
        http_route(canary, version, vec![], weighted),
    )]
}

/// The names our routes can have; any other route in a router is a user's and is kept.
fn our_route_names(canary: &Canary) -> [String; 4] {
    let (apex, _, canary_node) = super::service_names(canary);
    [
        apex.clone(),
        format!("{apex}-a"),
        format!("{apex}-b"),
        canary_node,
    ]
}

fn with_foreign(canary: &Canary, ours: Vec<Value>, live: Option<&Value>) -> Vec<Value> {
    let names = our_route_names(canary);
    let mut out = ours;
    out.extend(super::foreign_items(live, "/spec/routes", |r| {
        names.iter().any(|n| r["name"] == json!(n))
    }));
    out
}

/// App Mesh Gateway annotations for the apex VirtualService, when `service.hosts` is set.
pub fn gateway_annotations(canary: &Canary) -> Option<Value> {
    let svc = canary.spec.service.clone().unwrap_or_default();
    let hosts = svc.hosts.unwrap_or_default();
    if hosts.is_empty() {
        return None;
    }
    let domains: String = hosts.iter().map(|h| format!("{h},")).collect();
    let mut a = json!({
        "gateway.appmesh.k8s.aws/expose": "true",
        "gateway.appmesh.k8s.aws/domain": domains,
    });
    if let Some(t) = svc.timeout.filter(|t| !t.is_empty()) {
        a["gateway.appmesh.k8s.aws/timeout"] = json!(t);
    }
    if let Some(n) = svc.retries.and_then(|r| r.attempts).filter(|n| *n > 0) {
        a["gateway.appmesh.k8s.aws/retries"] = json!(n.to_string());
    }
    Some(a)
}

fn access_log(canary: &Canary) -> Value {
    let on = canary
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ACCESS_LOG_ANNOTATION))
        .is_some_and(|v| v == "enabled");
    if on {
        json!({"accessLog": {"file": {"path": "/dev/stdout"}}})
    } else {
        Value::Null
    }
}

fn backends(canary: &Canary, version: Version) -> Value {
    let list: Vec<Value> = canary
        .spec
        .service
        .iter()
        .flat_map(|s| s.backends.iter().flatten())
        .map(|b| match version {
            Version::V1beta1 => json!({"virtualService": {"virtualServiceName": b}}),
            Version::V1beta2 if b.starts_with("arn:aws") => {
                json!({"virtualService": {"virtualServiceARN": b}})
            }
            Version::V1beta2 => json!({"virtualService": {"virtualServiceRef": {"name": b}}}),
        })
        .collect();
    if list.is_empty() {
        Value::Null
    } else {
        Value::Array(list)
    }
}

fn mesh_name(canary: &Canary) -> Value {
    json!(
        canary
            .spec
            .service
            .as_ref()
            .and_then(|s| s.mesh_name.clone())
            .unwrap_or_default()
    )
}

/// The VirtualNode `name`. v1beta2 selects the pods of the Service `selector` (Flagger's
/// `{<label>: <target>[-primary]}`) and resolves `<name>.<ns>.svc.cluster.local.`; v1beta1
/// resolves `host` (`<svc>-primary.<ns>` for the apex and primary nodes).
pub fn virtual_node(
    canary: &Canary,
    version: Version,
    name: &str,
    host: &str,
    selector: Option<&Value>,
    live: Option<&Value>,
) -> Value {
    let spec = match version {
        Version::V1beta1 => object([
            ("meshName", mesh_name(canary)),
            (
                "listeners",
                json!([{"portMapping": {"port": super::service_port(canary), "protocol": protocol(canary)}}]),
            ),
            ("serviceDiscovery", json!({"dns": {"hostName": host}})),
            ("backends", backends(canary, version)),
            ("logging", access_log(canary)),
        ]),
        Version::V1beta2 => {
            let listener_timeout = timeout(canary)
                .map(|t| json!({"http": t}))
                .unwrap_or(Value::Null);
            object([
                (
                    "podSelector",
                    selector
                        .map(|s| json!({"matchLabels": s}))
                        .unwrap_or(Value::Null),
                ),
                (
                    "listeners",
                    json!([object([
                        (
                            "portMapping",
                            json!({"port": container_port(canary), "protocol": protocol(canary)})
                        ),
                        ("timeout", listener_timeout),
                    ])]),
                ),
                ("serviceDiscovery", json!({"dns": {"hostname": host}})),
                ("backends", backends(canary, version)),
                ("logging", access_log(canary)),
            ])
        }
    };
    json!({
        "apiVersion": version.api_version(),
        "kind": "VirtualNode",
        "metadata": super::owned_metadata(canary, name, Meta::Apex, super::owned_by(canary, live)),
        "spec": spec,
    })
}

/// The v1beta2 VirtualRouter `<svc>` (`for_canary == false`) or `<svc>-canary`.
pub fn virtual_router(
    canary: &Canary,
    split: Routes,
    for_canary: bool,
    live: Option<&Value>,
) -> Value {
    let (apex, _, canary_node) = super::service_names(canary);
    let name = if for_canary { canary_node } else { apex };
    let routes = mesh_routes(canary, Version::V1beta2, split, for_canary);
    json!({
        "apiVersion": Version::V1beta2.api_version(),
        "kind": "VirtualRouter",
        "metadata": super::owned_metadata(canary, &name, Meta::Bare, super::owned_by(canary, live)),
        "spec": {
            "listeners": [{"portMapping": {"port": container_port(canary), "protocol": protocol(canary)}}],
            "routes": with_foreign(canary, routes, live),
        },
    })
}

fn vs_metadata(canary: &Canary, name: &str, for_canary: bool, live: Option<&Value>) -> Value {
    let mut meta = super::owned_metadata(canary, name, Meta::Bare, super::owned_by(canary, live));
    if !for_canary && let Some(a) = gateway_annotations(canary) {
        meta["annotations"] = a;
    }
    meta
}

/// The VirtualService in front of a router. v1beta2: `<svc>` or `<svc>-canary`, pointing at
/// the VirtualRouter of the same name. v1beta1: `<svc>.<ns>` or `<svc>-canary.<ns>`, with the
/// router and its routes inside.
pub fn virtual_service(
    canary: &Canary,
    version: Version,
    split: Routes,
    for_canary: bool,
    live: Option<&Value>,
) -> Value {
    let (apex, _, canary_node) = super::service_names(canary);
    let router = if for_canary {
        canary_node.clone()
    } else {
        apex.clone()
    };
    match version {
        Version::V1beta2 => json!({
            "apiVersion": version.api_version(),
            "kind": "VirtualService",
            "metadata": vs_metadata(canary, &router, for_canary, live),
            "spec": {"provider": {"virtualRouter": {"virtualRouterRef": {"name": router}}}},
        }),
        Version::V1beta1 => {
            let name = format!(
                "{router}.{}",
                canary.metadata.namespace.clone().unwrap_or_default()
            );
            let routes = mesh_routes(canary, version, split, for_canary);
            json!({
                "apiVersion": version.api_version(),
                "kind": "VirtualService",
                "metadata": vs_metadata(canary, &name, for_canary, live),
                "spec": {
                    "meshName": mesh_name(canary),
                    "virtualRouter": {"name": router, "listeners": [
                        {"portMapping": {"port": super::service_port(canary), "protocol": protocol(canary)}}]},
                    "routes": with_foreign(canary, routes, live),
                },
            })
        }
    }
}

/// The name and kind of the object holding the apex split.
pub fn split_object(canary: &Canary, version: Version) -> (&'static str, String) {
    let apex = canary.spec.service_name();
    match version {
        Version::V1beta1 => (
            "VirtualService",
            format!(
                "{apex}.{}",
                canary.metadata.namespace.clone().unwrap_or_default()
            ),
        ),
        Version::V1beta2 => ("VirtualRouter", apex),
    }
}

/// Reads the split from the apex router's weighted route (`<svc>` or `<svc>-a`).
pub fn read_routes(canary: &Canary, version: Version, live: &Value) -> Result<Routes, Error> {
    let (apex, primary, canary_node) = super::service_names(canary);
    let (kind, name) = split_object(canary, version);
    let key = match version {
        Version::V1beta1 => "http",
        Version::V1beta2 => "httpRoute",
    };
    let ab = format!("{apex}-a");
    let targets = live["spec"]["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"] == json!(apex) || r["name"] == json!(ab))
        .and_then(|r| r[key]["action"]["weightedTargets"].as_array())
        .filter(|t| t.len() == 2)
        .ok_or_else(|| Error::Malformed(format!("{kind} {name}: weighted routes not found")))?;
    let node = |t: &Value| match version {
        Version::V1beta1 => t["virtualNodeName"].clone(),
        Version::V1beta2 => t["virtualNodeRef"]["name"].clone(),
    };
    let weight = |n: &str| {
        targets
            .iter()
            .find(|t| node(t) == json!(n))
            .map(|t| super::weight_of(t.get("weight")))
            .unwrap_or(0)
    };
    super::non_zero(
        Routes::split(weight(&primary), weight(&canary_node)),
        &format!("{kind} {name}"),
    )
}

/// The App Mesh router.
pub struct AppMeshRouter {
    client: kube::Client,
    version: Version,
}

impl AppMeshRouter {
    /// A router writing App Mesh objects of `version`.
    pub fn new(client: kube::Client, version: Version) -> Self {
        Self { client, version }
    }

    async fn live(&self, canary: &Canary, kind: &str, name: &str) -> Result<Option<Value>, Error> {
        super::get_for(&self.client, canary, self.version.api_version(), kind, name).await
    }

    /// Writes the apex router (v1beta2 VirtualRouter, v1beta1 VirtualService) with `split`, or
    /// with its live split when `None`.
    async fn write_split(&self, canary: &Canary, split: Option<Routes>) -> Result<(), Error> {
        let ns = canary.metadata.namespace.as_deref();
        let (kind, name) = split_object(canary, self.version);
        let live = self.live(canary, kind, &name).await?;
        let split = split.unwrap_or_else(|| {
            live.as_ref()
                .and_then(|l| read_routes(canary, self.version, l).ok())
                .unwrap_or(INITIAL)
        });
        let body = match self.version {
            Version::V1beta1 => virtual_service(canary, self.version, split, false, live.as_ref()),
            Version::V1beta2 => virtual_router(canary, split, false, live.as_ref()),
        };
        super::apply(&self.client, ns, &body).await
    }

    async fn reconcile_nodes(&self, canary: &Canary) -> Result<(), Error> {
        let ns = canary.metadata.namespace.clone().unwrap_or_default();
        let (apex, primary, canary_node) = super::service_names(canary);
        let nodes = match self.version {
            Version::V1beta1 => vec![
                (apex, format!("{primary}.{ns}")),
                (primary.clone(), format!("{primary}.{ns}")),
                (canary_node.clone(), format!("{canary_node}.{ns}")),
            ],
            Version::V1beta2 => vec![
                (
                    primary.clone(),
                    format!("{primary}.{ns}.svc.cluster.local."),
                ),
                (
                    canary_node.clone(),
                    format!("{canary_node}.{ns}.svc.cluster.local."),
                ),
            ],
        };
        let services = super::resource("v1", "Service");
        for (name, host) in nodes {
            let selector = if self.version == Version::V1beta2 {
                let svc = super::get(&self.client, Some(&ns), &services, &name)
                    .await?
                    .ok_or_else(|| Error::Missing(format!("Service {name}")))?;
                Some(svc["spec"]["selector"].clone())
            } else {
                None
            };
            let live = self.live(canary, "VirtualNode", &name).await?;
            let body = virtual_node(
                canary,
                self.version,
                &name,
                &host,
                selector.as_ref(),
                live.as_ref(),
            );
            super::apply(&self.client, Some(&ns), &body).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl TrafficRouter for AppMeshRouter {
    async fn reconcile(&self, canary: &Canary) -> Result<(), Error> {
        if self.version == Version::V1beta1
            && canary
                .spec
                .service
                .as_ref()
                .and_then(|s| s.mesh_name.as_deref())
                .is_none_or(str::is_empty)
        {
            return Err(Error::Invalid(
                "provider appmesh (v1beta1) needs service.meshName".into(),
            ));
        }
        let ns = canary.metadata.namespace.as_deref();
        self.reconcile_nodes(canary).await?;
        let canary_node = super::service_names(canary).2;
        match self.version {
            Version::V1beta2 => {
                let live = self.live(canary, "VirtualRouter", &canary_node).await?;
                let body = virtual_router(canary, INITIAL, true, live.as_ref());
                super::apply(&self.client, ns, &body).await?;
                self.write_split(canary, None).await?;
                for for_canary in [false, true] {
                    let name = if for_canary {
                        canary_node.clone()
                    } else {
                        canary.spec.service_name()
                    };
                    let live = self.live(canary, "VirtualService", &name).await?;
                    let body =
                        virtual_service(canary, self.version, INITIAL, for_canary, live.as_ref());
                    super::apply(&self.client, ns, &body).await?;
                }
                Ok(())
            }
            Version::V1beta1 => {
                let name = format!("{canary_node}.{}", ns.unwrap_or_default());
                let live = self.live(canary, "VirtualService", &name).await?;
                let body = virtual_service(canary, self.version, INITIAL, true, live.as_ref());
                super::apply(&self.client, ns, &body).await?;
                self.write_split(canary, None).await
            }
        }
    }

    async fn set_routes(&self, canary: &Canary, routes: Routes) -> Result<(), Error> {
        super::non_zero(routes, "App Mesh router")?;
        self.write_split(canary, Some(routes)).await
    }

    async fn routes(&self, canary: &Canary) -> Result<Routes, Error> {
        let (kind, name) = split_object(canary, self.version);
        let live = self
            .live(canary, kind, &name)
            .await?
            .ok_or_else(|| Error::Missing(format!("{kind} {name}")))?;
        read_routes(canary, self.version, &live)
    }

    async fn finalize(&self, _canary: &Canary) -> Result<(), Error> {
        Ok(())
    }
}

#[cfg(test)]
#[path = "appmesh_tests.rs"]
mod tests;
