//! The embedded Kubernetes-compatible API server that tests, the demo, benchmarks and fault
//! injection run against: HTTP on loopback, JSON, the real API conventions (network I/O).
//!
//! Test and demo infrastructure, never a production component. Start it with [`start`]:
//!
//! ```no_run
//! # async fn demo() -> Result<(), serin_cluster::Error> {
//! let cluster = serin_cluster::start(serin_cluster::ClusterConfig::default()).await?;
//! let client = cluster.client()?;
//! # drop(client);
//! cluster.shutdown().await;
//! # Ok(())
//! # }
//! ```
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinHandle;

pub mod accounting;
pub mod bench;
pub mod defaults;
pub mod events;
pub mod faults;
pub mod fields;
mod gc;
pub mod lease;
pub mod openapi;
pub mod ops;
pub mod patch;
pub mod proto;
pub mod resources;
pub mod schema;
pub mod selector;
mod server;
pub mod sim;
pub mod status;
pub mod store;
pub mod table;

pub use accounting::{RequestCount, RequestKey, Requests, WriteRecord};
pub use faults::{Fault, Faults};
pub use server::KUBE_MINOR;
pub use status::ApiError;

/// Errors of starting or talking to the embedded cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listening socket could not be bound.
    #[error("binding the API server to {addr}: {source}")]
    Bind {
        /// The address tried.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The kubeconfig could not be written.
    #[error("writing kubeconfig {path}: {source}")]
    WriteKubeconfig {
        /// Where.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A kube client for the server could not be built.
    #[error("building a kube client: {0}")]
    Client(#[source] kube::Error),
    /// The server URL did not parse (cannot happen for a socket address).
    #[error("server URL: {0}")]
    Url(#[source] axum::http::uri::InvalidUri),
    /// A bootstrap object could not be created.
    #[error("creating bootstrap object: {0}")]
    Bootstrap(#[source] ApiError),
}

/// How to run the embedded API server.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Port on 127.0.0.1; `None` picks a free one.
    pub port: Option<u16>,
    /// How many watch events are retained; older resourceVersions get 410 Gone.
    pub watch_history: usize,
    /// How often watches that allow bookmarks get one.
    pub bookmark_interval: Duration,
    /// Nodes the simulated controllers should create (read by `cluster::sim`, not by the server).
    pub nodes: usize,
    /// Act as an instant kubelet: new pods get a node, become Running and Ready with IPs and
    /// conditions. Turn off when a simulated kubelet manages pod status itself.
    pub kubelet: bool,
    /// The Kubernetes minor version the server impersonates (`/version`, and the features that
    /// version has: below 25 no server-side field validation, so the OpenAPI documents do not
    /// offer `fieldValidation`, the parameter is ignored and kubectl validates client-side
    /// against `/openapi/v2`).
    pub kube_minor: u32,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            port: None,
            watch_history: 10_000,
            bookmark_interval: Duration::from_secs(60),
            nodes: 1,
            kubelet: true,
            kube_minor: server::KUBE_MINOR,
        }
    }
}

/// A running embedded API server. Dropping it shuts the server down.
pub struct ClusterHandle {
    shared: Arc<server::Shared>,
    addr: SocketAddr,
    config: ClusterConfig,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// Installs ring as the rustls crypto provider unless one is installed already.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: a provider is installed either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn bootstrap(st: &mut store::State) -> Result<(), ApiError> {
    let ctx = ops::Ctx {
        manager: "kube-apiserver".into(),
        dry_run: false,
        now: server::now(),
        strict: false,
    };
    let ns = st
        .registry
        .get("", "v1", "namespaces")
        .ok_or_else(ApiError::not_found_path)?;
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ops::create(st, &ns, "", json!({"metadata": {"name": name}}), &ctx)?;
    }
    let svc = st
        .registry
        .get("", "v1", "services")
        .ok_or_else(ApiError::not_found_path)?;
    ops::create(
        st,
        &svc,
        "default",
        json!({"metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
               "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "targetPort": 6443}]}}),
        &ctx,
    )?;
    Ok(())
}

/// Starts the server on 127.0.0.1 and returns once it accepts connections.
pub async fn start(config: ClusterConfig) -> Result<ClusterHandle, Error> {
    install_crypto_provider();
    let addr = SocketAddr::from(([127, 0, 0, 1], config.port.unwrap_or(0)));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| Error::Bind { addr, source })?;
    let mut state = store::State::new(store::Settings {
        history: config.watch_history,
        kubelet: config.kubelet,
    });
    bootstrap(&mut state).map_err(Error::Bootstrap)?;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let shared = Arc::new(server::Shared {
        state: Mutex::new(state),
        faults: Faults::default(),
        requests: Requests::default(),
        gc: tokio::sync::Notify::new(),
        bookmark_interval: config.bookmark_interval,
        kube_minor: config.kube_minor,
        address: addr.to_string(),
        shutdown: stop_rx.clone(),
    });
    let app = axum::Router::new()
        .fallback(server::handle)
        .with_state(shared.clone());
    let mut graceful = stop_rx.clone();
    let serve = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = graceful.wait_for(|s| *s).await;
            })
            .await;
    });
    let gc_shared = shared.clone();
    let mut gc_stop = stop_rx;
    let gc = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = gc_shared.gc.notified() => {}
                _ = gc_stop.wait_for(|s| *s) => return,
            }
            // Let a burst of deletes land before a pass over everything.
            tokio::time::sleep(Duration::from_millis(5)).await;
            let mut st = gc_shared.lock();
            st.gc_wanted = false;
            gc::collect(&mut st, &server::now());
        }
    });
    Ok(ClusterHandle {
        shared,
        addr,
        config,
        stop,
        tasks: Mutex::new(vec![serve, gc]),
    })
}

impl ClusterHandle {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// A kubeconfig (context `serin`, namespace `default`) pointing at the server.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: serin\n  cluster:\n    server: {}\ncontexts:\n- name: serin\n  context:\n    cluster: serin\n    user: serin\n    namespace: default\ncurrent-context: serin\nusers:\n- name: serin\n  user: {{}}\npreferences: {{}}\n",
            self.url()
        )
    }

    /// Writes the kubeconfig to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), Error> {
        std::fs::write(path, self.kubeconfig_yaml()).map_err(|source| Error::WriteKubeconfig {
            path: path.display().to_string(),
            source,
        })
    }

    /// A kube client for the server, default namespace `default`.
    pub fn client(&self) -> Result<kube::Client, Error> {
        let url = self.url().parse::<axum::http::Uri>().map_err(Error::Url)?;
        let config = kube::Config::new(url);
        kube::Client::try_from(config).map_err(Error::Client)
    }

    /// The fault injection controls.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// The request counters.
    pub fn requests(&self) -> &Requests {
        &self.shared.requests
    }

    /// The current resourceVersion (the last one handed out).
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// How many objects are stored, over all kinds.
    pub fn object_count(&self) -> usize {
        self.shared.lock().objects.values().map(|c| c.len()).sum()
    }

    /// Stops serving: open watches end, the listener closes.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        self.shared.faults.resume();
        let tasks = std::mem::take(
            &mut *self
                .tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for t in tasks {
            let _ = t.await;
        }
    }
}

impl Drop for ClusterHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        self.shared.faults.resume();
    }
}
