//! Controller metrics (Flagger-compatible names) and the /healthz, /readyz, /metrics server; network I/O.
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
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

impl CanaryLabels {
    fn of((namespace, name): &Key) -> Self {
        Self {
            name: name.clone(),
            namespace: namespace.clone(),
        }
    }
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceLabels {
    namespace: String,
}

/// Flagger's labels of `flagger_canary_successes_total` / `flagger_canary_failures_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    name: String,
    namespace: String,
    deployment_strategy: String,
    analysis_status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WaitLabels {
    name: String,
    namespace: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    name: String,
    namespace: String,
    decision: String,
}

/// The label values one canary has exported, so that all its series can be dropped when the
/// Canary is deleted.
#[derive(Clone, Debug, Default)]
struct Exported {
    metrics: BTreeSet<String>,
    outcomes: BTreeSet<(String, String)>,
    runs: BTreeSet<(String, String)>,
    waiting: Option<String>,
    decisions: BTreeSet<String>,
    duration: bool,
}

/// A canary's series key: its namespace and its target's name (Flagger's `name` label).
type Key = (String, String);

fn key(canary: &Canary) -> Key {
    let namespace = canary.metadata.namespace.clone().unwrap_or_default();
    (namespace, canary.spec.target_name())
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn default_buckets() -> Histogram {
    // Prometheus client_golang's DefBuckets, as Flagger's histogram uses.
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// What a status change decided, for `serin_decisions_total`: the phase entered, a traffic or
/// iteration step, or a new wait; `None` when nothing was decided.
pub fn decision(before: Option<&CanaryStatus>, after: &CanaryStatus) -> Option<&'static str> {
    let before_phase = before.and_then(|s| s.phase);
    if after.phase != before_phase {
        return after.phase.map(CanaryPhase::as_str);
    }
    let (w0, i0) = before.map_or((0, 0), |s| (s.canary_weight, s.iterations));
    if after.canary_weight != w0 || after.iterations != i0 {
        return Some("Advance");
    }
    let reason = |s: Option<&CanaryStatus>| {
        s.and_then(|s| s.waiting_for.as_ref())
            .map(|w| w.reason.clone())
    };
    let now = reason(Some(after));
    if now.is_some() && now != reason(before) {
        return Some("Wait");
    }
    None
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
    total: Family<NamespaceLabels, Gauge>,
    duration: HistogramFamily<CanaryLabels>,
    successes: Family<RunLabels, Counter>,
    run_failures: Family<RunLabels, Counter>,
    waiting: Family<WaitLabels, Gauge>,
    waiting_since: Family<WaitLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    deadline: Family<CanaryLabels, Gauge>,
    decisions: Family<DecisionLabels, Counter>,
    /// Live heap bytes, exported only by a `heap-stats` build.
    heap_live: Option<Gauge>,
    exported: Arc<Mutex<BTreeMap<Key, Exported>>>,
    namespaces: Arc<Mutex<BTreeSet<String>>>,
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
        let heap_live = super::heap::live_bytes().map(|_| {
            register(
                &mut registry,
                "serin_heap_live_bytes",
                "Bytes the process has allocated and not freed (heap-stats builds only)",
                Gauge::default(),
            )
        });
        Self {
            heap_live,
            status: register(
                &mut registry,
                "flagger_canary_status",
                "Canary status: 0 Progressing, 2 Failed, 1 anything else",
                Family::default(),
            ),
            weight: register(
                &mut registry,
                "flagger_canary_weight",
                "Traffic weight per workload",
                Family::default(),
            ),
            reconcile_duration: register(
                &mut registry,
                "serin_reconcile_duration_seconds",
                "Time spent in one reconcile",
                Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            ),
            // 0.5 ms to about 30 s in steps of 1.5×, fine enough to read a p99 off the buckets.
            tick_lag: register(
                &mut registry,
                "serin_analysis_tick_lag_seconds",
                "How late each analysis tick of a Progressing canary ran after it was due (the \
                 previous tick plus the interval)",
                Histogram::new(exponential_buckets(0.0005, 1.5, 28)),
            ),
            failures: register(
                &mut registry,
                "serin_reconcile_failures",
                "Failed reconciles by category",
                Family::default(),
            ),
            metric_analysis: register(
                &mut registry,
                "flagger_canary_metric_analysis",
                "Last value of each metric check (request-duration in seconds, as Flagger exports it)",
                Family::default(),
            ),
            check_outcomes: register(
                &mut registry,
                "serin_canary_check_outcome",
                "Metric check outcomes: Pass, Fail, NoData, Error or InsufficientSample",
                Family::default(),
            ),
            leader: register(
                &mut registry,
                "serin_leader",
                "1 while this process leads (always 1 without leader election), else 0",
                Gauge::default(),
            ),
            total: register(
                &mut registry,
                "flagger_canary_total",
                "Canaries per namespace",
                Family::default(),
            ),
            duration: register(
                &mut registry,
                "flagger_canary_duration_seconds",
                "Time spent deciding one step of a canary (one reconcile)",
                Family::new_with_constructor(default_buckets),
            ),
            successes: register(
                &mut registry,
                "flagger_canary_successes",
                "Runs that ended in promotion",
                Family::default(),
            ),
            run_failures: register(
                &mut registry,
                "flagger_canary_failures",
                "Runs that ended in rollback",
                Family::default(),
            ),
            waiting: register(
                &mut registry,
                "serin_canary_waiting",
                "1 while a canary cannot advance, labelled with the reason (status.waitingFor)",
                Family::default(),
            ),
            waiting_since: register(
                &mut registry,
                "serin_canary_waiting_since_timestamp_seconds",
                "Since when (Unix time) a canary has been waiting for the reason (status.waitingFor.since)",
                Family::default(),
            ),
            deadline: register(
                &mut registry,
                "serin_canary_progress_deadline_seconds",
                "The canary's progressDeadlineSeconds (what the stuck alert compares a wait with)",
                Family::default(),
            ),
            decisions: register(
                &mut registry,
                "serin_decisions",
                "Decisions taken: the phase entered, Advance (a traffic or iteration step) or Wait",
                Family::default(),
            ),
            registry: Arc::new(registry),
            exported: Arc::default(),
            namespaces: Arc::default(),
        }
    }

    fn exported<T>(&self, k: &Key, f: impl FnOnce(&mut Exported) -> T) -> T {
        let mut map = self
            .exported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(map.entry(k.clone()).or_default())
    }

    /// Times one reconcile of a canary (`flagger_canary_duration_seconds`) until the guard drops.
    pub fn canary_timer(&self, canary: &Canary) -> Timer {
        let k = key(canary);
        self.exported(&k, |e| e.duration = true);
        Timer {
            start: Instant::now(),
            histogram: self.duration.get_or_create(&CanaryLabels::of(&k)).clone(),
        }
    }

    /// Sets `flagger_canary_total` from the Canaries that exist and drops every series of a
    /// Canary that no longer does.
    pub fn sync_canaries<'a>(&self, canaries: impl IntoIterator<Item = &'a Canary>) {
        let mut per_namespace: BTreeMap<String, i64> = BTreeMap::new();
        let mut live = BTreeSet::new();
        for c in canaries {
            let k = key(c);
            *per_namespace.entry(k.0.clone()).or_default() += 1;
            live.insert(k);
        }
        {
            let mut known = self
                .namespaces
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for ns in known.iter().filter(|ns| !per_namespace.contains_key(*ns)) {
                self.total.remove(&NamespaceLabels {
                    namespace: ns.clone(),
                });
            }
            known.clear();
            for (ns, n) in &per_namespace {
                self.total
                    .get_or_create(&NamespaceLabels {
                        namespace: ns.clone(),
                    })
                    .set(*n);
                known.insert(ns.clone());
            }
        }
        let gone: Vec<(Key, Exported)> = {
            let mut map = self
                .exported
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let keys: Vec<Key> = map.keys().filter(|k| !live.contains(*k)).cloned().collect();
            keys.into_iter()
                .filter_map(|k| map.remove(&k).map(|e| (k, e)))
                .collect()
        };
        for ((namespace, name), e) in gone {
            self.forget(&namespace, &name, &e);
        }
    }

    fn forget(&self, namespace: &str, name: &str, e: &Exported) {
        let (ns, n) = (namespace.to_string(), name.to_string());
        let canary = CanaryLabels {
            name: n.clone(),
            namespace: ns.clone(),
        };
        self.status.remove(&canary);
        self.duration.remove(&canary);
        self.deadline.remove(&canary);
        for workload in [n.clone(), format!("{n}-primary")] {
            self.weight.remove(&WeightLabels {
                workload,
                namespace: ns.clone(),
            });
        }
        for metric in &e.metrics {
            self.metric_analysis.remove(&MetricLabels {
                name: n.clone(),
                namespace: ns.clone(),
                metric: metric.clone(),
            });
        }
        for (metric, outcome) in &e.outcomes {
            self.check_outcomes.remove(&OutcomeLabels {
                namespace: ns.clone(),
                name: n.clone(),
                metric: metric.clone(),
                outcome: outcome.clone(),
            });
        }
        for (deployment_strategy, analysis_status) in &e.runs {
            let l = RunLabels {
                name: n.clone(),
                namespace: ns.clone(),
                deployment_strategy: deployment_strategy.clone(),
                analysis_status: analysis_status.clone(),
            };
            self.successes.remove(&l);
            self.run_failures.remove(&l);
        }
        if let Some(reason) = &e.waiting {
            let l = WaitLabels {
                name: n.clone(),
                namespace: ns.clone(),
                reason: reason.clone(),
            };
            self.waiting.remove(&l);
            self.waiting_since.remove(&l);
        }
        for decision in &e.decisions {
            self.decisions.remove(&DecisionLabels {
                name: n.clone(),
                namespace: ns.clone(),
                decision: decision.clone(),
            });
        }
    }

    /// Records whether this process leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Times a reconcile until the guard drops.
    pub fn reconcile_timer(&self) -> Timer {
        Timer {
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
    /// `provider` is the provider in effect (the Canary's or the controller's default).
    pub fn observe_status(
        &self,
        canary: &Canary,
        status: &CanaryStatus,
        provider: Option<crate::api::Provider>,
    ) {
        let k = key(canary);
        self.observe_wait(&k, status);
        self.observe_decision(canary, &k, status, provider);
        let deadline = i64::try_from(canary.spec.progress_deadline().as_secs()).unwrap_or(i64::MAX);
        self.deadline
            .get_or_create(&CanaryLabels::of(&k))
            .set(deadline);
        let value = match status.phase {
            Some(CanaryPhase::Progressing) => 0,
            Some(CanaryPhase::Failed) => 2,
            _ => 1,
        };
        self.status.get_or_create(&CanaryLabels::of(&k)).set(value);
        let (ns, target) = k;
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

    /// `serin_canary_waiting`: one series, for the current reason, while the canary waits.
    fn observe_wait(&self, k: &Key, status: &CanaryStatus) {
        let reason = status.waiting_for.as_ref().map(|w| w.reason.clone());
        let previous = self.exported(k, |e| std::mem::replace(&mut e.waiting, reason.clone()));
        let labels = |reason: String| WaitLabels {
            name: k.1.clone(),
            namespace: k.0.clone(),
            reason,
        };
        if let Some(p) = previous.filter(|p| Some(p) != reason.as_ref()) {
            self.waiting.remove(&labels(p.clone()));
            self.waiting_since.remove(&labels(p));
        }
        if let Some(w) = &status.waiting_for {
            self.waiting.get_or_create(&labels(w.reason.clone())).set(1);
            if let Some(since) = &w.since {
                #[allow(clippy::cast_precision_loss)]
                let t = since.0.as_millisecond() as f64 / 1000.0;
                self.waiting_since
                    .get_or_create(&labels(w.reason.clone()))
                    .set(t);
            }
        }
    }

    /// `serin_decisions_total`, and Flagger's successes/failures counters when a run ends.
    fn observe_decision(
        &self,
        canary: &Canary,
        k: &Key,
        status: &CanaryStatus,
        provider: Option<crate::api::Provider>,
    ) {
        let before = canary.status.as_ref();
        let Some(d) = decision(before, status) else {
            return;
        };
        self.exported(k, |e| e.decisions.insert(d.to_string()));
        self.decisions
            .get_or_create(&DecisionLabels {
                name: k.1.clone(),
                namespace: k.0.clone(),
                decision: d.to_string(),
            })
            .inc();
        let ended = match status.phase {
            Some(CanaryPhase::Succeeded) => &self.successes,
            Some(CanaryPhase::Failed) => &self.run_failures,
            _ => return,
        };
        // A run ends from a running phase; Initialized → Succeeded is a skipped analysis only
        // when the canary skips it.
        let ran = before.and_then(|s| s.phase).is_some_and(|p| p.is_running());
        if !ran {
            return;
        }
        let strategy = deployment_strategy(canary, provider);
        let analysis_status = if canary.spec.skips_analysis() {
            "skipped"
        } else {
            "completed"
        };
        self.exported(k, |e| {
            e.runs
                .insert((strategy.to_string(), analysis_status.to_string()))
        });
        ended
            .get_or_create(&RunLabels {
                name: k.1.clone(),
                namespace: k.0.clone(),
                deployment_strategy: strategy.to_string(),
                analysis_status: analysis_status.to_string(),
            })
            .inc();
    }

    /// Exports the decision records of one analysis tick: each value (Flagger's gauge) and each
    /// outcome (Serin's counter). `name` is the target's name, as in Flagger's metrics.
    pub fn observe_checks(&self, canary: &Canary, records: &[CheckRecord]) {
        let k = key(canary);
        let (namespace, name) = k.clone();
        for r in records.iter().filter(|r| r.kind == "metric") {
            self.exported(&k, |e| {
                e.metrics.insert(r.name.clone());
                e.outcomes.insert((r.name.clone(), r.outcome.clone()));
            });
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
        if let (Some(g), Some(live)) = (&self.heap_live, super::heap::live_bytes()) {
            g.set(i64::try_from(live).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Records the time since it started in its histogram when dropped: one reconcile
/// (`serin_reconcile_duration_seconds`) or one canary's step (`flagger_canary_duration_seconds`).
pub struct Timer {
    start: Instant,
    histogram: Histogram,
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

/// Flagger's `deployment_strategy` label: `canary`, `blue-green` or `ab-testing`.
fn deployment_strategy(canary: &Canary, provider: Option<crate::api::Provider>) -> &'static str {
    use crate::api::defaults::Strategy;
    let provider = provider.unwrap_or(crate::api::Provider::Kubernetes);
    match canary.spec.strategy(provider) {
        Strategy::Canary => "canary",
        Strategy::BlueGreen => "blue-green",
        Strategy::AbTesting => "ab-testing",
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

/// Registers `metric` under `name` and returns the handle the controller updates.
fn register<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::canary::{TargetRef, WaitingFor};

    fn canary(name: &str, ns: &str, status: Option<CanaryStatus>) -> Canary {
        let mut c = Canary::new(
            name,
            crate::api::CanarySpec {
                target_ref: Some(TargetRef {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: name.into(),
                }),
                analysis: Some(crate::api::canary::CanaryAnalysis {
                    step_weight: Some(20),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        c.metadata.namespace = Some(ns.into());
        c.status = status;
        c
    }

    fn waiting(reason: &str) -> CanaryStatus {
        CanaryStatus {
            phase: Some(CanaryPhase::Progressing),
            canary_weight: 20,
            waiting_for: Some(WaitingFor {
                reason: reason.into(),
                message: "canary Pods not ready: 1/3 ready".into(),
                since: Some(crate::api::time::to_time(
                    chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
                )),
            }),
            ..Default::default()
        }
    }

    fn lines<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains(needle))
            .collect()
    }

    #[test]
    fn a_deleted_canarys_series_leave_the_metrics() {
        let t = Telemetry::new("istio", None);
        let (a, b) = (
            canary("podinfo", "test", None),
            canary("other", "prod", None),
        );
        t.observe_status(&a, &waiting("CanaryPodsNotReady"), None);
        t.observe_status(&b, &waiting("GateClosed"), None);
        t.observe_checks(
            &a,
            &[CheckRecord {
                name: "request-success-rate".into(),
                kind: "metric".into(),
                value: Some(99.0),
                outcome: "Pass".into(),
                ..Default::default()
            }],
        );
        drop(t.canary_timer(&a));
        t.sync_canaries([&a, &b]);
        let text = t.encode();
        let mut totals = lines(&text, "flagger_canary_total{");
        totals.sort_unstable();
        assert_eq!(
            totals,
            vec![
                "flagger_canary_total{namespace=\"prod\"} 1",
                "flagger_canary_total{namespace=\"test\"} 1",
            ]
        );
        assert!(text.contains("serin_canary_waiting{name=\"podinfo\",namespace=\"test\",reason=\"CanaryPodsNotReady\"} 1"), "{text}");
        assert!(text.contains("serin_canary_waiting_since_timestamp_seconds{name=\"podinfo\",namespace=\"test\",reason=\"CanaryPodsNotReady\"} 1800000000"), "{text}");
        assert!(text.contains("serin_decisions_total{name=\"podinfo\",namespace=\"test\",decision=\"Progressing\"} 1"), "{text}");
        assert!(lines(&text, "namespace=\"test\"").len() > 5, "{text}");

        t.sync_canaries([&b]);
        let text = t.encode();
        assert_eq!(
            lines(&text, "namespace=\"test\""),
            Vec::<&str>::new(),
            "{text}"
        );
        assert!(
            text.contains("flagger_canary_total{namespace=\"prod\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("flagger_canary_status{name=\"other\",namespace=\"prod\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn a_new_wait_reason_replaces_the_old_series_and_clearing_removes_it() {
        let t = Telemetry::new("istio", None);
        let before = canary("podinfo", "test", Some(waiting("CanaryPodsNotReady")));
        t.observe_status(&before, &waiting("RouteNotAccepted"), None);
        let text = t.encode();
        assert_eq!(lines(&text, "serin_canary_waiting{").len(), 1, "{text}");
        assert!(text.contains("reason=\"RouteNotAccepted\"} 1"), "{text}");
        assert!(text.contains("decision=\"Wait\"} 1"), "{text}");
        let cleared = CanaryStatus {
            waiting_for: None,
            canary_weight: 40,
            ..waiting("RouteNotAccepted")
        };
        t.observe_status(&before, &cleared, None);
        let text = t.encode();
        assert!(lines(&text, "serin_canary_waiting").is_empty(), "{text}");
        assert!(text.contains("decision=\"Advance\"} 1"), "{text}");
    }

    #[test]
    fn a_run_that_ends_is_counted_with_flaggers_labels() {
        let t = Telemetry::new("istio", None);
        let running = canary("podinfo", "test", Some(waiting("GateClosed")));
        let failed = CanaryStatus {
            phase: Some(CanaryPhase::Failed),
            ..Default::default()
        };
        t.observe_status(&running, &failed, Some(crate::api::Provider::Istio));
        let text = t.encode();
        assert!(
            text.contains("flagger_canary_failures_total{name=\"podinfo\",namespace=\"test\",deployment_strategy=\"canary\",analysis_status=\"completed\"} 1"),
            "{text}"
        );
        assert!(
            lines(&text, "flagger_canary_successes_total{").is_empty(),
            "{text}"
        );
    }

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
