//! Controller metrics (Flagger-compatible names) and the /healthz, /readyz, /metrics server; network I/O.
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Instant;

use crate::api::canary::CanaryStatus;
use crate::api::{Canary, CanaryPhase};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    version: String,
    mesh_provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CanaryLabels {
    name: String,
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WeightLabels {
    workload: String,
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    category: String,
}

/// The controller's metrics, shared by reconcilers and the HTTP server.
#[derive(Clone)]
pub struct Telemetry {
    registry: Arc<Registry>,
    status: Family<CanaryLabels, Gauge>,
    weight: Family<WeightLabels, Gauge>,
    reconcile_duration: Histogram,
    failures: Family<ErrorLabels, Counter>,
}

impl Telemetry {
    /// Registers the metrics.
    pub fn new(mesh_provider: &str) -> Self {
        let mut registry = Registry::default();
        let info = Family::<InfoLabels, Gauge>::default();
        info.get_or_create(&InfoLabels {
            version: env!("CARGO_PKG_VERSION").to_string(),
            mesh_provider: mesh_provider.to_string(),
        })
        .set(1);
        registry.register("flagger_info", "Serin version and mesh provider", info);
        let status = Family::<CanaryLabels, Gauge>::default();
        registry.register(
            "flagger_canary_status",
            "Canary status: 0 Progressing, 2 Failed, 1 anything else",
            status.clone(),
        );
        let weight = Family::<WeightLabels, Gauge>::default();
        registry.register(
            "flagger_canary_weight",
            "Traffic weight per workload",
            weight.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "serin_reconcile_duration_seconds",
            "Time spent in one reconcile",
            reconcile_duration.clone(),
        );
        let failures = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "serin_reconcile_failures",
            "Failed reconciles by category",
            failures.clone(),
        );
        Self {
            registry: Arc::new(registry),
            status,
            weight,
            reconcile_duration,
            failures,
        }
    }

    /// Times a reconcile until the guard drops.
    pub fn reconcile_timer(&self) -> ReconcileTimer {
        ReconcileTimer {
            start: Instant::now(),
            histogram: self.reconcile_duration.clone(),
        }
    }

    /// Counts a failed reconcile.
    pub fn reconcile_failure(&self, category: &str) {
        self.failures
            .get_or_create(&ErrorLabels {
                category: category.to_string(),
            })
            .inc();
    }

    /// Updates the per-canary gauges from a status just written.
    pub fn observe_status(&self, canary: &Canary, status: &CanaryStatus) {
        let ns = canary.metadata.namespace.clone().unwrap_or_default();
        let target = canary
            .spec
            .target_ref
            .as_ref()
            .map(|t| t.name.clone())
            .unwrap_or_default();
        let value = match status.phase {
            Some(CanaryPhase::Progressing) => 0,
            Some(CanaryPhase::Failed) => 2,
            _ => 1,
        };
        self.status
            .get_or_create(&CanaryLabels {
                name: target.clone(),
                namespace: ns.clone(),
            })
            .set(value);
        let w = i64::from(status.canary_weight);
        self.weight
            .get_or_create(&WeightLabels {
                workload: target.clone(),
                namespace: ns.clone(),
            })
            .set(w);
        self.weight
            .get_or_create(&WeightLabels {
                workload: format!("{target}-primary"),
                namespace: ns,
            })
            .set(100 - w);
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Records the reconcile duration when dropped.
pub struct ReconcileTimer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

/// Serves /healthz, /readyz and /metrics until the process stops.
pub async fn serve(addr: std::net::SocketAddr, telemetry: Telemetry) -> std::io::Result<()> {
    use axum::{Router, routing::get};
    let app = Router::new()
        .route("/healthz", get(|| async { "OK" }))
        .route("/readyz", get(|| async { "OK" }))
        .route(
            "/metrics",
            get(move || {
                let t = telemetry.clone();
                async move { t.encode() }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}
