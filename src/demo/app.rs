//! The demo app: one real HTTP server on loopback per simulated Pod, configured from the Pod's
//! container env (`DEMO_VERSION`, `DEMO_LATENCY_MS`, `DEMO_ERROR_RATE`); watches Pods (I/O).
//!
//! The embedded cluster's kubelet gives every Pod an IP from the Pod network; nothing listens
//! there, so this module plays the container runtime: when a Pod with an IP appears, a server
//! starts for it and the [`Registry`] maps the Pod IP to the server's loopback address. When the
//! Pod is deleted its server keeps answering for a drain period, as a real container does
//! between SIGTERM and exit, and then stops.
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::watcher;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How a version of the app behaves, read from a Pod's first container env.
#[derive(Clone, Debug, PartialEq)]
pub struct Behaviour {
    /// `DEMO_VERSION` (or the image tag when unset).
    pub version: String,
    /// `DEMO_LATENCY_MS`: added to every request.
    pub latency: Duration,
    /// `DEMO_ERROR_RATE`: the share of requests answered with HTTP 500, in [0, 1].
    pub error_rate: f64,
}

impl Behaviour {
    /// Reads the behaviour from a Pod; `None` when it has no containers.
    pub fn of(pod: &Pod) -> Option<Behaviour> {
        let container = pod.spec.as_ref()?.containers.first()?;
        let env = |name: &str| {
            container
                .env
                .iter()
                .flatten()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
        };
        let tag = container
            .image
            .as_deref()
            .and_then(|i| i.rsplit_once(':'))
            .map(|(_, t)| t.to_string())
            .unwrap_or_else(|| "latest".into());
        let latency = env("DEMO_LATENCY_MS")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .unwrap_or(0.0);
        let error_rate = env("DEMO_ERROR_RATE")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite())
            .unwrap_or(0.0)
            .clamp(0.0, 1.0);
        Some(Behaviour {
            version: env("DEMO_VERSION").unwrap_or(tag),
            latency: Duration::from_secs_f64(latency / 1000.0),
            error_rate,
        })
    }
}

/// Decides, request by request, which answers are errors so that exactly `rate` of them are
/// (an error whenever the running count of errors falls behind `n × rate`); no randomness, so
/// the demo's figures are reproducible.
#[derive(Debug, Default)]
pub struct ErrorBudget {
    served: AtomicU64,
}

impl ErrorBudget {
    /// Whether the next request fails.
    pub fn next_fails(&self, rate: f64) -> bool {
        let n = self.served.fetch_add(1, Ordering::Relaxed) as f64;
        ((n + 1.0) * rate).floor() > (n * rate).floor()
    }
}

/// A Pod's server as the data plane sees it.
#[derive(Clone, Debug)]
pub struct Backend {
    /// Pod name.
    pub pod: String,
    /// Where its server listens.
    pub addr: SocketAddr,
    /// What it runs.
    pub behaviour: Behaviour,
}

/// Pod IP → the server backing that Pod.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<RwLock<HashMap<String, Backend>>>,
}

impl Registry {
    /// The server behind a Pod IP.
    pub fn get(&self, ip: &str) -> Option<Backend> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(ip)
            .cloned()
    }

    /// The names of the Pods that have a server.
    pub fn pods(&self) -> Vec<String> {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|b| b.pod.clone())
            .collect()
    }

    fn insert(&self, ip: String, b: Backend) {
        self.inner
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ip, b);
    }

    fn remove(&self, ip: &str, pod: &str) {
        let mut m = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if m.get(ip).is_some_and(|b| b.pod == pod) {
            m.remove(ip);
        }
    }
}

/// Errors of the app runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A server could not bind a loopback port.
    #[error("cannot start the app server of pod {pod}: {source}")]
    Bind {
        /// The Pod.
        pod: String,
        /// The cause.
        source: std::io::Error,
    },
}

async fn serve_pod(
    pod: String,
    behaviour: Behaviour,
) -> Result<(SocketAddr, JoinHandle<()>), Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|source| Error::Bind {
            pod: pod.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Bind {
        pod: pod.clone(),
        source,
    })?;
    let budget = Arc::new(ErrorBudget::default());
    let app = axum::Router::new().fallback(move || {
        let behaviour = behaviour.clone();
        let budget = budget.clone();
        let pod = pod.clone();
        async move { answer(&pod, &behaviour, &budget).await }
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, task))
}

async fn answer(
    pod: &str,
    behaviour: &Behaviour,
    budget: &ErrorBudget,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !behaviour.latency.is_zero() {
        tokio::time::sleep(behaviour.latency).await;
    }
    let status = if budget.next_fails(behaviour.error_rate) {
        http::StatusCode::INTERNAL_SERVER_ERROR
    } else {
        http::StatusCode::OK
    };
    let body = serde_json::json!({
        "hostname": pod,
        "version": behaviour.version,
        "message": if status.is_success() { "greetings from podinfo" } else { "injected failure" },
    });
    (
        status,
        [
            ("x-demo-version", behaviour.version.clone()),
            ("x-demo-pod", pod.to_string()),
            ("content-type", "application/json".to_string()),
        ],
        body.to_string(),
    )
        .into_response()
}

struct Running {
    ip: String,
    task: JoinHandle<()>,
}

/// Watches the Pods of `namespace` and keeps one server per Pod that has an IP, until the
/// returned task is aborted. `drain` is how long a deleted Pod keeps answering.
pub fn run(
    client: kube::Client,
    namespace: &str,
    registry: Registry,
    drain: Duration,
) -> JoinHandle<()> {
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    tokio::spawn(async move {
        let mut running: HashMap<String, Running> = HashMap::new();
        let mut events = watcher(pods, watcher::Config::default()).boxed();
        while let Some(ev) = events.next().await {
            let (alive, gone): (Vec<Pod>, Vec<Pod>) = match ev {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                    if p.metadata.deletion_timestamp.is_some() {
                        (vec![], vec![p])
                    } else {
                        (vec![p], vec![])
                    }
                }
                Ok(watcher::Event::Delete(p)) => (vec![], vec![p]),
                Ok(_) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "demo app pod watch");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            for p in alive {
                let name = p.metadata.name.clone().unwrap_or_default();
                let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone());
                let (Some(ip), false) = (ip, running.contains_key(&name)) else {
                    continue;
                };
                let Some(behaviour) = Behaviour::of(&p) else {
                    continue;
                };
                match serve_pod(name.clone(), behaviour.clone()).await {
                    Ok((addr, task)) => {
                        registry.insert(
                            ip.clone(),
                            Backend {
                                pod: name.clone(),
                                addr,
                                behaviour,
                            },
                        );
                        running.insert(name, Running { ip, task });
                    }
                    Err(e) => tracing::warn!(error = %e, "demo app"),
                }
            }
            for p in gone {
                let name = p.metadata.name.clone().unwrap_or_default();
                if let Some(r) = running.remove(&name) {
                    let registry = registry.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(drain).await;
                        registry.remove(&r.ip, &name);
                        r.task.abort();
                    });
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(env: serde_json::Value, image: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "app", "image": image, "env": env}]}
        }))
        .unwrap()
    }

    #[test]
    fn behaviour_comes_from_the_container_env() {
        let b = Behaviour::of(&pod(
            json!([{"name": "DEMO_VERSION", "value": "v3"},
                   {"name": "DEMO_LATENCY_MS", "value": "25"},
                   {"name": "DEMO_ERROR_RATE", "value": "0.3"}]),
            "podinfo:6.0.2",
        ))
        .unwrap();
        assert_eq!(b.version, "v3");
        assert_eq!(b.latency, Duration::from_millis(25));
        assert_eq!(b.error_rate, 0.3);
    }

    #[test]
    fn without_demo_env_the_image_tag_is_the_version_and_the_app_is_healthy() {
        let b = Behaviour::of(&pod(json!([]), "ghcr.io/x/podinfo:6.1.0")).unwrap();
        assert_eq!(b.version, "6.1.0");
        assert_eq!(b.error_rate, 0.0);
        assert!(b.latency.is_zero());
    }

    #[test]
    fn malformed_env_values_fall_back_to_healthy_defaults() {
        let b = Behaviour::of(&pod(
            json!([{"name": "DEMO_LATENCY_MS", "value": "-5"},
                   {"name": "DEMO_ERROR_RATE", "value": "lots"}]),
            "x:1",
        ))
        .unwrap();
        assert!(b.latency.is_zero());
        assert_eq!(b.error_rate, 0.0);
        let b = Behaviour::of(&pod(
            json!([{"name": "DEMO_ERROR_RATE", "value": "7"}]),
            "x:1",
        ))
        .unwrap();
        assert_eq!(b.error_rate, 1.0);
    }

    #[test]
    fn the_error_budget_fails_exactly_the_asked_share() {
        for rate in [0.0, 0.3, 0.25, 1.0] {
            let budget = ErrorBudget::default();
            let failed = (0..1000).filter(|_| budget.next_fails(rate)).count();
            assert_eq!(failed, (1000.0 * rate) as usize, "rate {rate}");
        }
    }
}
