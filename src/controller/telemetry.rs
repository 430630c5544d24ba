//! Controller metrics (Flagger-compatible names) and the /healthz, /readyz, /metrics server; network I/O.
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Instant;

use crate::api::canary::{CanaryStatus, CheckRecord};
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
struct MetricLabels {
    name: String,
    namespace: String,
    metric: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    namespace: String,
    name: String,
    metric: String,
    outcome: String,
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
    tick_lag: Histogram,
    failures: Family<ErrorLabels, Counter>,
    metric_analysis: Family<MetricLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    check_outcomes: Family<OutcomeLabels, Counter>,
    leader: Gauge,
}

impl Telemetry {
    /// Registers the metrics.
    pub fn new(mesh_provider: &str, alerts: Option<crate::notifier::DeliveryCounters>) -> Self {
        let mut registry = Registry::default();
        if let Some(c) = alerts {
            registry.register(
                "serin_alerts_delivered",
                "Alerts delivered to AlertProviders or the global notifier",
                c.delivered,
            );
            registry.register(
                "serin_alerts_failed",
                "Alerts that could not be delivered (provider or Secret missing, POST failed)",
                c.failed,
            );
        }
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
        // 0.5 ms to about 30 s in steps of 1.5×, fine enough to read a p99 off the buckets.
        let tick_lag = Histogram::new(exponential_buckets(0.0005, 1.5, 28));
        registry.register(
            "serin_analysis_tick_lag_seconds",
            "How late each analysis tick of a Progressing canary ran after it was due (the \
             previous tick plus the interval)",
            tick_lag.clone(),
        );
        let failures = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "serin_reconcile_failures",
            "Failed reconciles by category",
            failures.clone(),
        );
        let metric_analysis =
            Family::<MetricLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "flagger_canary_metric_analysis",
            "Last value of each metric check (request-duration in seconds, as Flagger exports it)",
            metric_analysis.clone(),
        );
        let check_outcomes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "serin_canary_check_outcome",
            "Metric check outcomes: Pass, Fail, NoData, Error or InsufficientSample",
            check_outcomes.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "serin_leader",
            "1 while this process leads (always 1 without leader election), else 0",
            leader.clone(),
        );
        Self {
            registry: Arc::new(registry),
            status,
            weight,
            reconcile_duration,
            tick_lag,
            failures,
            metric_analysis,
            check_outcomes,
            leader,
        }
    }

    /// Records whether this process leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Times a reconcile until the guard drops.
    pub fn reconcile_timer(&self) -> ReconcileTimer {
        ReconcileTimer {
            start: Instant::now(),
            histogram: self.reconcile_duration.clone(),
        }
    }

    /// Records how late an analysis tick ran.
    pub fn observe_tick_lag(&self, lag: std::time::Duration) {
        self.tick_lag.observe(lag.as_secs_f64());
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

    /// Exports the decision records of one analysis tick: each value (Flagger's gauge) and each
    /// outcome (Serin's counter). `name` is the target's name, as in Flagger's metrics.
    pub fn observe_checks(&self, canary: &Canary, records: &[CheckRecord]) {
        let namespace = canary.metadata.namespace.clone().unwrap_or_default();
        let name = canary
            .spec
            .target_ref
            .as_ref()
            .map(|t| t.name.clone())
            .unwrap_or_default();
        for r in records.iter().filter(|r| r.kind == "metric") {
            if let Some(v) = r.value {
                // Records hold request-duration in milliseconds; Flagger exports seconds.
                let v = if r.name == crate::metrics::builtin::DURATION {
                    v / 1000.0
                } else {
                    v
                };
                self.metric_analysis
                    .get_or_create(&MetricLabels {
                        name: name.clone(),
                        namespace: namespace.clone(),
                        metric: r.name.clone(),
                    })
                    .set(v);
            }
            self.check_outcomes
                .get_or_create(&OutcomeLabels {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    metric: r.name.clone(),
                    outcome: r.outcome.clone(),
                })
                .inc();
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_deliveries_and_failures_are_exported() {
        let counters = crate::notifier::DeliveryCounters::default();
        let t = Telemetry::new("istio", Some(counters.clone()));
        counters.delivered.inc();
        counters.delivered.inc();
        counters.failed.inc();
        let text = t.encode();
        assert!(text.contains("serin_alerts_delivered_total 2"), "{text}");
        assert!(text.contains("serin_alerts_failed_total 1"), "{text}");
        let without = Telemetry::new("istio", None).encode();
        assert!(!without.contains("serin_alerts"), "{without}");
    }
}
