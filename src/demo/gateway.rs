//! The demo's data plane: a weighted HTTP proxy that implements the demo Gateway by following
//! the HTTPRoutes attached to it, writes their parent status like a Gateway controller, and
//! exports per-pod request metrics for Prometheus (network and API I/O).
//!
//! Requests are routed as a Gateway implementation routes them: HTTPRoute rule (matches and
//! precedence) → weighted backend Service → the Service's ready Endpoints → the Pod's server.
//! The metrics are podinfo's `http_request_duration_seconds` histogram labelled with
//! `kubernetes_namespace` and `kubernetes_pod_name` of the Pod that answered, which is what
//! Flagger's builtin `gatewayapi`/generic HTTP queries read. Requests the proxy cannot deliver
//! (no route, no ready endpoint, a Pod that does not answer) are routing failures, counted apart
//! from the app's own errors and answered with 502/503 and an `x-demo-gateway-error` header.
use super::app::Registry;
use super::routing::{self, RequestInfo, WeightedRoundRobin};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Endpoints;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The controller name the demo Gateway's GatewayClass names.
pub const CONTROLLER_NAME: &str = "serin.dev/demo-gateway";

/// Histogram bounds in seconds (the Prometheus client default, as podinfo uses).
pub const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Errors starting the gateway.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener could not bind.
    #[error("cannot listen on loopback: {0}")]
    Bind(#[from] std::io::Error),
    /// The HTTP client could not be built.
    #[error("cannot build the proxy's HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

#[derive(Default, Clone)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Requests one version of the app answered, as the proxy saw them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VersionCount {
    /// All answered requests.
    pub requests: u64,
    /// Those answered with 5xx by the app.
    pub errors: u64,
}

/// A point-in-time copy of the proxy's counters.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Per app version.
    pub versions: BTreeMap<String, VersionCount>,
    /// Per backend Service, per version: requests answered.
    pub backends: BTreeMap<String, BTreeMap<String, u64>>,
    /// Requests the proxy could not deliver, by reason.
    pub routing_failures: BTreeMap<String, u64>,
}

impl Stats {
    /// All routing failures.
    pub fn routing_failures_total(&self) -> u64 {
        self.routing_failures.values().sum()
    }
}

#[derive(Default)]
struct Counters {
    /// (pod, status code) → latency histogram.
    pods: BTreeMap<(String, String), Histogram>,
    stats: Stats,
}

struct Shared {
    namespace: String,
    gateway: String,
    routes: Store<DynamicObject>,
    endpoints: Store<Endpoints>,
    registry: Registry,
    wrr: Mutex<WeightedRoundRobin>,
    rr: Mutex<HashMap<String, usize>>,
    counters: Mutex<Counters>,
    http: reqwest::Client,
}

/// The running gateway.
pub struct Gateway {
    shared: Arc<Shared>,
    /// Where the proxy listens (the Gateway's address).
    pub proxy_addr: SocketAddr,
    /// Where `/metrics` is served.
    pub metrics_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The HTTPRoute resource (Gateway API v1).
pub fn httproute_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
    ))
}

impl Gateway {
    /// Starts the proxy, its metrics endpoint and the status writer for the Gateway
    /// `namespace/gateway`.
    pub async fn start(
        client: kube::Client,
        namespace: &str,
        gateway: &str,
        registry: Registry,
    ) -> Result<Gateway, Error> {
        let ar = httproute_resource();
        let routes_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
        let routes_writer = reflector::store::Writer::new(ar.clone());
        let routes = routes_writer.as_reader();
        let (endpoints, ep_writer) = reflector::store();
        let mut tasks = Vec::new();
        let rstream = reflector::reflector(
            routes_writer,
            watcher(routes_api.clone(), watcher::Config::default()),
        )
        .default_backoff()
        .touched_objects();
        tasks.push(tokio::spawn(write_status(
            rstream.boxed(),
            routes_api,
            namespace.to_string(),
            gateway.to_string(),
        )));
        let eps: Api<Endpoints> = Api::namespaced(client.clone(), namespace);
        tasks.push(tokio::spawn(
            reflector::reflector(ep_writer, watcher(eps, watcher::Config::default()))
                .default_backoff()
                .for_each(|_| async {}),
        ));
        tasks.push(tokio::spawn(gateway_status(
            client.clone(),
            namespace.to_string(),
            gateway.to_string(),
        )));
        let shared = Arc::new(Shared {
            namespace: namespace.to_string(),
            gateway: gateway.to_string(),
            routes,
            endpoints,
            registry,
            wrr: Mutex::new(WeightedRoundRobin::default()),
            rr: Mutex::new(HashMap::new()),
            counters: Mutex::new(Counters::default()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(16)
                .build()?,
        });
        let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let proxy_addr = proxy.local_addr()?;
        let s = shared.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let s = s.clone();
            async move { proxy_request(&s, req).await }
        });
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(proxy, app).await;
        }));
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let metrics_addr = metrics.local_addr()?;
        let s = shared.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let s = s.clone();
                async move { render_metrics(&s) }
            }),
        );
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(metrics, app).await;
        }));
        Ok(Gateway {
            shared,
            proxy_addr,
            metrics_addr,
            tasks,
        })
    }

    /// A copy of the counters.
    pub fn stats(&self) -> Stats {
        lock(&self.shared.counters).stats.clone()
    }

    /// Whether an HTTPRoute attached to this Gateway is known to the proxy.
    pub fn has_routes(&self) -> bool {
        !attached_routes(&self.shared).is_empty()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn attached_routes(s: &Shared) -> Vec<Value> {
    s.routes
        .state()
        .iter()
        .filter_map(|r| serde_json::to_value(r.as_ref()).ok())
        .filter(|r| routing::attached(r, &s.namespace, &s.gateway))
        .collect()
}

fn request_info(req: &axum::extract::Request) -> RequestInfo {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k.as_str().to_ascii_lowercase(),
                v.to_str().ok()?.to_string(),
            ))
        })
        .collect();
    let host = headers
        .iter()
        .find(|(k, _)| k == "host")
        .map(|(_, v)| {
            v.rsplit_once(':')
                .map_or(v.as_str(), |(h, _)| h)
                .to_string()
        })
        .unwrap_or_default();
    let query = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    RequestInfo {
        host,
        path: req.uri().path().to_string(),
        method: req.method().as_str().to_ascii_uppercase(),
        headers,
        query,
    }
}

fn routing_failure(s: &Shared, reason: &str, status: http::StatusCode) -> axum::response::Response {
    use axum::response::IntoResponse;
    *lock(&s.counters)
        .stats
        .routing_failures
        .entry(reason.to_string())
        .or_default() += 1;
    (
        status,
        [("x-demo-gateway-error", reason.to_string())],
        format!("demo gateway: {reason}\n"),
    )
        .into_response()
}

/// The ready addresses of a Service's Endpoints.
fn ready_ips(s: &Shared, namespace: &str, service: &str) -> Vec<String> {
    let key = reflector::ObjectRef::<Endpoints>::new(service).within(namespace);
    s.endpoints
        .get(&key)
        .map(|ep| {
            ep.subsets
                .iter()
                .flatten()
                .flat_map(|ss| ss.addresses.iter().flatten())
                .map(|a| a.ip.clone())
                .collect()
        })
        .unwrap_or_default()
}

async fn proxy_request(s: &Shared, req: axum::extract::Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    let info = request_info(&req);
    let Some(selected) = routing::select(&attached_routes(s), &info) else {
        return routing_failure(s, "no_route", http::StatusCode::NOT_FOUND);
    };
    let weights: Vec<u32> = selected.backends.iter().map(|b| b.weight).collect();
    let Some(i) = lock(&s.wrr).pick(&selected.key, &weights) else {
        // Gateway API: a rule whose backends all weigh 0 answers 500.
        return routing_failure(s, "no_backend", http::StatusCode::INTERNAL_SERVER_ERROR);
    };
    let backend = &selected.backends[i];
    let ips = ready_ips(s, &backend.namespace, &backend.service);
    if ips.is_empty() {
        return routing_failure(s, "no_endpoints", http::StatusCode::SERVICE_UNAVAILABLE);
    }
    let n = {
        let mut rr = lock(&s.rr);
        let c = rr.entry(backend.service.clone()).or_default();
        *c = c.wrapping_add(1);
        *c
    };
    let ip = &ips[n % ips.len()];
    let Some(pod) = s.registry.get(ip) else {
        return routing_failure(s, "unknown_pod", http::StatusCode::BAD_GATEWAY);
    };
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 1 << 20).await else {
        return (
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large\n",
        )
            .into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let mut out = s
        .http
        .request(parts.method.clone(), format!("http://{}{path}", pod.addr))
        .body(body);
    for (k, v) in &parts.headers {
        if !matches!(
            k.as_str(),
            "host" | "connection" | "content-length" | "transfer-encoding"
        ) {
            out = out.header(k, v);
        }
    }
    let started = Instant::now();
    let resp = match out.send().await {
        Ok(r) => r,
        Err(_) => return routing_failure(s, "upstream_unreachable", http::StatusCode::BAD_GATEWAY),
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap_or_default();
    let elapsed = started.elapsed().as_secs_f64();
    {
        let mut c = lock(&s.counters);
        let h = c
            .pods
            .entry((pod.pod.clone(), status.as_u16().to_string()))
            .or_default();
        h.count += 1;
        h.sum += elapsed;
        for (b, n) in BUCKETS.iter().zip(h.buckets.iter_mut()) {
            if elapsed <= *b {
                *n += 1;
            }
        }
        let version = pod.behaviour.version.clone();
        let v = c.stats.versions.entry(version.clone()).or_default();
        v.requests += 1;
        if status.is_server_error() {
            v.errors += 1;
        }
        *c.stats
            .backends
            .entry(backend.service.clone())
            .or_default()
            .entry(version)
            .or_default() += 1;
    }
    let mut response = (status, bytes).into_response();
    for (k, v) in &headers {
        if k.as_str().starts_with("x-demo-") || k == http::header::CONTENT_TYPE {
            response.headers_mut().insert(k.clone(), v.clone());
        }
    }
    response
}

fn render_metrics(s: &Shared) -> String {
    use std::fmt::Write;
    // Every running Pod is exported from its first scrape on with zero counts for 200 and 500,
    // as its own metrics endpoint would be, so that a rate exists from the first request on (a
    // series born with its first request has no rate until its second scrape).
    let pods = s.registry.pods();
    let mut c = lock(&s.counters);
    for p in pods {
        for status in ["200", "500"] {
            c.pods.entry((p.clone(), status.into())).or_default();
        }
    }
    let mut out = String::new();
    out.push_str(
        "# HELP http_request_duration_seconds Request latency by the Pod that answered.\n",
    );
    out.push_str("# TYPE http_request_duration_seconds histogram\n");
    for ((pod, status), h) in &c.pods {
        let l = format!(
            "kubernetes_namespace=\"{}\",kubernetes_pod_name=\"{pod}\",status=\"{status}\"",
            s.namespace
        );
        for (b, n) in BUCKETS.iter().zip(h.buckets.iter()) {
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{{l},le=\"{b}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "http_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(out, "http_request_duration_seconds_sum{{{l}}} {}", h.sum);
        let _ = writeln!(
            out,
            "http_request_duration_seconds_count{{{l}}} {}",
            h.count
        );
    }
    out.push_str(
        "# HELP demo_gateway_routing_failures_total Requests the gateway could not deliver.\n",
    );
    out.push_str("# TYPE demo_gateway_routing_failures_total counter\n");
    for (reason, n) in &c.stats.routing_failures {
        let _ = writeln!(
            out,
            "demo_gateway_routing_failures_total{{reason=\"{reason}\"}} {n}"
        );
    }
    out.push_str("# HELP demo_gateway_requests_total Requests answered, by backend Service and app version.\n");
    out.push_str("# TYPE demo_gateway_requests_total counter\n");
    for (backend, versions) in &c.stats.backends {
        for (version, n) in versions {
            let _ = writeln!(
                out,
                "demo_gateway_requests_total{{backend=\"{backend}\",version=\"{version}\"}} {n}"
            );
        }
    }
    out
}

/// What this Gateway writes in a route's `status.parents` for one parentRef.
pub fn parent_status(parent: &Value, generation: i64, now: &str) -> Value {
    let condition = |type_: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": "True", "reason": reason, "message": message,
               "observedGeneration": generation, "lastTransitionTime": now})
    };
    json!({
        "parentRef": parent,
        "controllerName": CONTROLLER_NAME,
        "conditions": [
            condition("Accepted", "Accepted", "Route is accepted by the serin demo gateway"),
            condition("ResolvedRefs", "ResolvedRefs", "Backend Services are resolved"),
        ]
    })
}

/// The `status.parents` a route should have: other controllers' entries unchanged, ours for
/// every parentRef that names our Gateway. `None` when the live status already says that for
/// the current generation.
pub fn desired_parents(route: &Value, namespace: &str, gateway: &str, now: &str) -> Option<Value> {
    let route_ns = route["metadata"]["namespace"].as_str().unwrap_or_default();
    let generation = route["metadata"]["generation"].as_i64().unwrap_or(0);
    let live: Vec<Value> = route["status"]["parents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ours: Vec<&Value> = route["spec"]["parentRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| routing::parent_is(p, route_ns, namespace, gateway))
        .collect();
    let up_to_date = ours.iter().all(|p| {
        live.iter().any(|st| {
            st["parentRef"] == **p
                && st["controllerName"] == CONTROLLER_NAME
                && st["conditions"].as_array().is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c["type"] == "Accepted"
                            && c["status"] == "True"
                            && c["observedGeneration"].as_i64() == Some(generation)
                    })
                })
        })
    });
    let stale_ours = live.iter().any(|st| {
        st["controllerName"] == CONTROLLER_NAME && !ours.iter().any(|p| st["parentRef"] == **p)
    });
    if up_to_date && !stale_ours {
        return None;
    }
    let mut parents: Vec<Value> = live
        .into_iter()
        .filter(|st| st["controllerName"] != CONTROLLER_NAME)
        .collect();
    parents.extend(ours.into_iter().map(|p| parent_status(p, generation, now)));
    Some(Value::Array(parents))
}

async fn write_status(
    mut touched: futures::stream::BoxStream<'static, Result<DynamicObject, watcher::Error>>,
    api: Api<DynamicObject>,
    namespace: String,
    gateway: String,
) {
    while let Some(ev) = touched.next().await {
        let Ok(obj) = ev else { continue };
        let Ok(route) = serde_json::to_value(&obj) else {
            continue;
        };
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let Some(parents) = desired_parents(&route, &namespace, &gateway, &now) else {
            continue;
        };
        let name = route["metadata"]["name"].as_str().unwrap_or_default();
        let patch = json!({"status": {"parents": parents}});
        if let Err(e) = api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(error = %e, route = name, "demo gateway: cannot write route status");
        }
    }
}

/// Marks the Gateway accepted and programmed with the proxy's address, once it exists.
async fn gateway_status(client: kube::Client, namespace: String, gateway: String) {
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        "v1",
        "Gateway",
    ));
    let api: Api<DynamicObject> = Api::namespaced_with(client, &namespace, &ar);
    for _ in 0..600 {
        if let Ok(Some(gw)) = api.get_opt(&gateway).await {
            let generation = gw.metadata.generation.unwrap_or(0);
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let cond = |t: &str| {
                json!({"type": t, "status": "True", "reason": t, "message": "serin demo gateway",
                       "observedGeneration": generation, "lastTransitionTime": now})
            };
            let patch = json!({"status": {
                "addresses": [{"type": "IPAddress", "value": "127.0.0.1"}],
                "conditions": [cond("Accepted"), cond("Programmed")]
            }});
            if api
                .patch_status(&gateway, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(parents: Value, status: Value, generation: i64) -> Value {
        json!({"metadata": {"name": "podinfo", "namespace": "demo", "generation": generation},
               "spec": {"parentRefs": parents}, "status": status})
    }

    #[test]
    fn a_new_route_gets_accepted_for_its_generation() {
        let r = route(json!([{"name": "demo-gateway"}]), json!({}), 3);
        let parents = desired_parents(&r, "demo", "demo-gateway", "t").unwrap();
        assert_eq!(parents[0]["parentRef"], json!({"name": "demo-gateway"}));
        assert_eq!(parents[0]["conditions"][0]["type"], "Accepted");
        assert_eq!(parents[0]["conditions"][0]["observedGeneration"], 3);
    }

    #[test]
    fn an_accepted_route_is_left_alone_until_its_generation_moves() {
        let r = route(json!([{"name": "demo-gateway"}]), json!({}), 3);
        let parents = desired_parents(&r, "demo", "demo-gateway", "t").unwrap();
        let accepted = route(
            json!([{"name": "demo-gateway"}]),
            json!({"parents": parents}),
            3,
        );
        assert_eq!(
            desired_parents(&accepted, "demo", "demo-gateway", "t"),
            None
        );
        let moved = route(
            json!([{"name": "demo-gateway"}]),
            json!({"parents": parents}),
            4,
        );
        assert!(desired_parents(&moved, "demo", "demo-gateway", "t").is_some());
    }

    #[test]
    fn other_controllers_entries_are_kept_and_foreign_parents_ignored() {
        let theirs = json!({"parentRef": {"name": "mesh", "kind": "Service", "group": ""},
                            "controllerName": "linkerd.io/gateway-controller", "conditions": []});
        let r = route(
            json!([{"name": "demo-gateway"}, {"name": "mesh", "kind": "Service", "group": ""}]),
            json!({"parents": [theirs.clone()]}),
            1,
        );
        let parents = desired_parents(&r, "demo", "demo-gateway", "t").unwrap();
        let parents = parents.as_array().unwrap();
        assert_eq!(parents.len(), 2);
        assert_eq!(parents[0], theirs);
        assert_eq!(parents[1]["controllerName"], CONTROLLER_NAME);
    }
}
