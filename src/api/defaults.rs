//! Flagger's defaults, applied in exactly one place: accessor methods over the raw spec; pure.
//!
//! The raw spec keeps what the user wrote (so it round-trips); everything that reads a value with a
//! default goes through these methods.
use std::time::Duration;

use super::canary::{
    CanaryAlert, CanaryAnalysis, CanaryMetric, CanarySpec, CanaryWebhook, HttpMatchRequest,
};
use super::duration::parse_duration;
use super::provider::{Provider, UnknownProvider};

/// Default analysis interval when the field is empty or unparsable.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Flagger's minimum analysis interval (the controller's `--min-interval` may lower it).
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Default `progressDeadlineSeconds`.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
/// Default metric query window.
pub const DEFAULT_METRIC_INTERVAL: &str = "1m";
/// Default webhook timeout.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `maxWeight`.
pub const DEFAULT_MAX_WEIGHT: i32 = 100;
/// Default ready thresholds, in percent.
pub const DEFAULT_READY_THRESHOLD: i32 = 100;
/// Default session-affinity cookie lifetime.
pub const DEFAULT_COOKIE_MAX_AGE: i32 = 86400;
/// Default name of the main Service port.
pub const DEFAULT_PORT_NAME: &str = "http";
/// Iterations forced on the `kubernetes` provider when none are set.
pub const KUBERNETES_DEFAULT_ITERATIONS: i32 = 10;

/// The three deployment strategies Flagger derives from the analysis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Progressive traffic shifting by weight.
    Canary,
    /// Header/cookie-matched traffic for a number of iterations.
    AbTesting,
    /// Iterations with no weights; all traffic switches at promotion.
    BlueGreen,
}

impl Strategy {
    /// The label value Flagger uses in metrics (`deployment_strategy`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Canary => "canary",
            Self::AbTesting => "ab-testing",
            Self::BlueGreen => "blue-green",
        }
    }
}

impl CanarySpec {
    /// The analysis, or an empty one (no analysis implies `skipAnalysis`).
    pub fn analysis_or_default(&self) -> CanaryAnalysis {
        self.analysis.clone().unwrap_or_default()
    }

    /// The provider in effect: the spec's, else the controller default.
    pub fn provider_str<'a>(&'a self, default: &'a str) -> &'a str {
        self.provider
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or(default)
    }

    /// The parsed provider in effect.
    pub fn provider(&self, default: &str) -> Result<Provider, UnknownProvider> {
        self.provider_str(default).parse()
    }

    /// The analysis interval: 60s when empty or unparsable, never below `min`.
    pub fn interval(&self, min: Duration) -> Duration {
        let raw = self.analysis.as_ref().and_then(|a| a.interval.as_deref());
        let parsed = raw
            .and_then(|s| parse_duration(s).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_INTERVAL);
        parsed.max(min)
    }

    /// Failed checks tolerated before rollback; values ≤ 0 mean 1.
    pub fn threshold(&self) -> i32 {
        self.analysis
            .as_ref()
            .and_then(|a| a.threshold)
            .filter(|t| *t > 0)
            .unwrap_or(1)
    }

    /// The progress deadline (default 600s).
    pub fn progress_deadline(&self) -> Duration {
        let secs = self
            .progress_deadline_seconds
            .filter(|s| *s > 0)
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS);
        Duration::from_secs(u64::try_from(secs).unwrap_or(600))
    }

    /// Whether analysis is skipped (explicitly, or because there is none).
    pub fn skips_analysis(&self) -> bool {
        self.skip_analysis.unwrap_or(false) || self.analysis.is_none()
    }

    /// Whether the canary is suspended.
    pub fn is_suspended(&self) -> bool {
        self.suspend.unwrap_or(false)
    }

    /// Whether deletion restores the target first.
    pub fn reverts_on_deletion(&self) -> bool {
        self.revert_on_deletion.unwrap_or(false)
    }

    /// The A/B testing conditions, `analysis.match` (empty when the analysis has none).
    pub fn ab_matches(&self) -> &[HttpMatchRequest] {
        self.analysis
            .as_ref()
            .and_then(|a| a.match_.as_deref())
            .unwrap_or_default()
    }

    /// `targetRef.name` (empty without a target).
    pub fn target_name(&self) -> String {
        self.target_ref
            .as_ref()
            .map(|t| t.name.clone())
            .unwrap_or_default()
    }

    /// The apex Service name: `service.name`, else the target's name.
    pub fn service_name(&self) -> String {
        self.service
            .as_ref()
            .and_then(|s| s.name.clone())
            .filter(|n| !n.is_empty())
            .or_else(|| self.target_ref.as_ref().map(|t| t.name.clone()))
            .unwrap_or_default()
    }

    /// The name of the main Service port (default `http`).
    pub fn port_name(&self) -> String {
        self.service
            .as_ref()
            .and_then(|s| s.port_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| DEFAULT_PORT_NAME.to_string())
    }

    /// The highest canary weight: the last `stepWeights` entry capped at 100, else `maxWeight`,
    /// else 100.
    pub fn max_weight(&self) -> i32 {
        let a = self.analysis.as_ref();
        if let Some(last) = a
            .and_then(|a| a.step_weights.as_ref())
            .and_then(|w| w.last())
        {
            return (*last).min(100);
        }
        a.and_then(|a| a.max_weight)
            .filter(|w| *w > 0)
            .unwrap_or(DEFAULT_MAX_WEIGHT)
    }

    /// Iterations configured, with the `kubernetes` provider's forced minimum of 10.
    pub fn iterations(&self, provider: Provider) -> i32 {
        let it = self
            .analysis
            .as_ref()
            .and_then(|a| a.iterations)
            .unwrap_or(0);
        if provider == Provider::Kubernetes && it < 1 {
            KUBERNETES_DEFAULT_ITERATIONS
        } else {
            it
        }
    }

    /// The strategy Flagger derives: `match` + iterations is A/B, iterations alone is blue/green,
    /// anything else is a progressive canary. The `kubernetes` provider is always blue/green.
    pub fn strategy(&self, provider: Provider) -> Strategy {
        if provider == Provider::Kubernetes {
            return Strategy::BlueGreen;
        }
        let a = self.analysis.as_ref();
        let iterations = a.and_then(|a| a.iterations).unwrap_or(0);
        let has_match = !self.ab_matches().is_empty();
        if has_match && iterations > 0 {
            Strategy::AbTesting
        } else if iterations > 0 {
            Strategy::BlueGreen
        } else {
            Strategy::Canary
        }
    }

    /// The canary weight after one successful step from `current`, or `None` at the maximum.
    /// `stepWeight` wins over `stepWeights`; a weight not on the ladder jumps to the maximum.
    pub fn next_weight(&self, current: i32) -> Option<i32> {
        let max = self.max_weight();
        if current >= max {
            return None;
        }
        let a = self.analysis.as_ref();
        let step = a.and_then(|a| a.step_weight).filter(|s| *s > 0);
        if let Some(step) = step {
            return Some((current + step).min(max));
        }
        let ladder = a.and_then(|a| a.step_weights.as_ref());
        match ladder {
            Some(ladder) if !ladder.is_empty() => {
                let next = if current == 0 {
                    ladder.first().copied()
                } else {
                    match ladder.iter().position(|w| *w == current) {
                        Some(i) => ladder.get(i + 1).copied(),
                        None => Some(max),
                    }
                };
                Some(next.unwrap_or(max).min(max).min(100))
            }
            _ => None,
        }
    }

    /// The metrics, or none.
    pub fn metrics(&self) -> &[CanaryMetric] {
        self.analysis
            .as_ref()
            .and_then(|a| a.metrics.as_deref())
            .unwrap_or_default()
    }

    /// The webhooks, or none.
    pub fn webhooks(&self) -> &[CanaryWebhook] {
        self.analysis
            .as_ref()
            .and_then(|a| a.webhooks.as_deref())
            .unwrap_or_default()
    }

    /// The webhooks of one type (an empty type means `rollout`); unknown types are left out.
    pub fn webhooks_of(&self, kind: super::webhook_type::WebhookType) -> Vec<&CanaryWebhook> {
        self.webhooks()
            .iter()
            .filter(|w| w.type_.as_deref().unwrap_or("").parse() == Ok(kind))
            .collect()
    }

    /// The alerts, or none.
    pub fn alerts(&self) -> &[CanaryAlert] {
        self.analysis
            .as_ref()
            .and_then(|a| a.alerts.as_deref())
            .unwrap_or_default()
    }

    /// Percent of primary pods that must be available (default 100).
    pub fn primary_ready_threshold(&self) -> i32 {
        self.analysis
            .as_ref()
            .and_then(|a| a.primary_ready_threshold)
            .unwrap_or(DEFAULT_READY_THRESHOLD)
    }

    /// Percent of canary pods that must be available (default 100).
    pub fn canary_ready_threshold(&self) -> i32 {
        self.analysis
            .as_ref()
            .and_then(|a| a.canary_ready_threshold)
            .unwrap_or(DEFAULT_READY_THRESHOLD)
    }
}

/// What an inconclusive metric check (no data, provider failure) means (`analysis.onInconclusive`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InconclusivePolicy {
    /// Count it as a failed check (Flagger's behaviour, the default).
    #[default]
    Fail,
    /// Hold the step until data arrives, bounded by the progress deadline.
    Hold,
}

impl CanarySpec {
    /// `analysis.onInconclusive`: `hold` holds; anything else (validation rejects other values)
    /// fails, as Flagger does.
    pub fn inconclusive_policy(&self) -> InconclusivePolicy {
        match self
            .analysis
            .as_ref()
            .and_then(|a| a.on_inconclusive.as_deref())
        {
            Some("hold") => InconclusivePolicy::Hold,
            _ => InconclusivePolicy::Fail,
        }
    }
}

impl CanaryMetric {
    /// The query window (default `1m`).
    pub fn interval_or_default(&self) -> &str {
        self.interval
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_METRIC_INTERVAL)
    }

    /// The accepted range after folding in the deprecated `threshold`: a minimum for
    /// `request-success-rate`, a maximum for everything else. Returns `(min, max)`.
    pub fn effective_range(&self) -> (Option<f64>, Option<f64>) {
        let (mut min, mut max) = self
            .threshold_range
            .as_ref()
            .map(|r| (r.min, r.max))
            .unwrap_or((None, None));
        if let Some(t) = self.threshold.filter(|t| *t != 0.0) {
            if self.name == "request-success-rate" {
                min = min.or(Some(t));
            } else {
                max = max.or(Some(t));
            }
        }
        (min, max)
    }

    /// Whether the check is one of the two builtins, selected by name as Flagger does.
    pub fn is_builtin(&self) -> bool {
        matches!(
            self.name.as_str(),
            "request-success-rate" | "request-duration"
        )
    }
}

impl CanaryWebhook {
    /// The request timeout: 10s when unset, shorter than two characters, or unparsable.
    pub fn timeout_or_default(&self) -> Duration {
        self.timeout
            .as_deref()
            .filter(|s| s.len() >= 2)
            .and_then(|s| parse_duration(s).ok())
            .unwrap_or(DEFAULT_WEBHOOK_TIMEOUT)
    }
}

impl CanaryAlert {
    /// The severity: an empty or absent value means `info`, as Flagger documents (Flagger's code
    /// drops such alerts instead; see docs/differences-from-flagger.md).
    pub fn severity_or_default(&self) -> &str {
        self.severity
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or("info")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::canary::{CanaryAnalysis, TargetRef};

    fn spec(analysis: CanaryAnalysis) -> CanarySpec {
        CanarySpec {
            target_ref: Some(TargetRef {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: "podinfo".into(),
            }),
            analysis: Some(analysis),
            ..Default::default()
        }
    }

    #[test]
    fn interval_defaults_to_a_minute_and_is_clamped_to_the_minimum() {
        let s = spec(CanaryAnalysis::default());
        assert_eq!(s.interval(MIN_INTERVAL), Duration::from_secs(60));
        let s = spec(CanaryAnalysis {
            interval: Some("2s".into()),
            ..Default::default()
        });
        assert_eq!(s.interval(MIN_INTERVAL), Duration::from_secs(10));
        assert_eq!(s.interval(Duration::from_secs(1)), Duration::from_secs(2));
        let s = spec(CanaryAnalysis {
            interval: Some("bogus".into()),
            ..Default::default()
        });
        assert_eq!(s.interval(MIN_INTERVAL), Duration::from_secs(60));
    }

    #[test]
    fn non_positive_threshold_means_one() {
        for (t, want) in [(None, 1), (Some(0), 1), (Some(-3), 1), (Some(5), 5)] {
            let s = spec(CanaryAnalysis {
                threshold: t,
                ..Default::default()
            });
            assert_eq!(s.threshold(), want);
        }
    }

    #[test]
    fn max_weight_prefers_the_last_step_weight_capped_at_100() {
        let s = spec(CanaryAnalysis {
            step_weights: Some(vec![1, 5, 50]),
            max_weight: Some(80),
            ..Default::default()
        });
        assert_eq!(s.max_weight(), 50);
        let s = spec(CanaryAnalysis {
            step_weights: Some(vec![10, 150]),
            ..Default::default()
        });
        assert_eq!(s.max_weight(), 100);
        let s = spec(CanaryAnalysis {
            max_weight: Some(60),
            ..Default::default()
        });
        assert_eq!(s.max_weight(), 60);
        assert_eq!(spec(CanaryAnalysis::default()).max_weight(), 100);
    }

    #[test]
    fn strategy_derivation_follows_match_and_iterations() {
        use crate::api::canary::HttpMatchRequest;
        let ab = spec(CanaryAnalysis {
            iterations: Some(10),
            match_: Some(vec![HttpMatchRequest::default()]),
            ..Default::default()
        });
        assert_eq!(ab.strategy(Provider::Istio), Strategy::AbTesting);
        let bg = spec(CanaryAnalysis {
            iterations: Some(10),
            ..Default::default()
        });
        assert_eq!(bg.strategy(Provider::Istio), Strategy::BlueGreen);
        let canary = spec(CanaryAnalysis {
            step_weight: Some(10),
            ..Default::default()
        });
        assert_eq!(canary.strategy(Provider::Istio), Strategy::Canary);
        // match without iterations is still a canary
        let m = spec(CanaryAnalysis {
            step_weight: Some(10),
            match_: Some(vec![HttpMatchRequest::default()]),
            ..Default::default()
        });
        assert_eq!(m.strategy(Provider::Istio), Strategy::Canary);
        // the kubernetes provider is always blue/green, with 10 iterations forced
        assert_eq!(canary.strategy(Provider::Kubernetes), Strategy::BlueGreen);
        assert_eq!(canary.iterations(Provider::Kubernetes), 10);
    }

    #[test]
    fn next_weight_walks_step_weight_up_to_max() {
        let s = spec(CanaryAnalysis {
            step_weight: Some(20),
            max_weight: Some(50),
            ..Default::default()
        });
        let walk: Vec<_> = std::iter::successors(Some(0), |w| s.next_weight(*w)).collect();
        assert_eq!(walk, vec![0, 20, 40, 50]);
    }

    #[test]
    fn next_weight_follows_the_ladder_and_jumps_off_ladder_weights_to_max() {
        let s = spec(CanaryAnalysis {
            step_weights: Some(vec![1, 5, 10, 50]),
            ..Default::default()
        });
        let walk: Vec<_> = std::iter::successors(Some(0), |w| s.next_weight(*w)).collect();
        assert_eq!(walk, vec![0, 1, 5, 10, 50]);
        assert_eq!(s.next_weight(7), Some(50));
    }

    #[test]
    fn deprecated_threshold_is_a_min_for_success_rate_and_a_max_otherwise() {
        let m = CanaryMetric {
            name: "request-success-rate".into(),
            threshold: Some(99.0),
            ..Default::default()
        };
        assert_eq!(m.effective_range(), (Some(99.0), None));
        let m = CanaryMetric {
            name: "request-duration".into(),
            threshold: Some(500.0),
            ..Default::default()
        };
        assert_eq!(m.effective_range(), (None, Some(500.0)));
    }

    #[test]
    fn short_or_missing_webhook_timeouts_mean_ten_seconds() {
        for t in [None, Some("5"), Some("xx")] {
            let w = CanaryWebhook {
                timeout: t.map(str::to_string),
                ..Default::default()
            };
            assert_eq!(w.timeout_or_default(), Duration::from_secs(10));
        }
        let w = CanaryWebhook {
            timeout: Some("30s".into()),
            ..Default::default()
        };
        assert_eq!(w.timeout_or_default(), Duration::from_secs(30));
    }

    #[test]
    fn empty_alert_severity_means_info() {
        let a = CanaryAlert {
            severity: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(a.severity_or_default(), "info");
    }
}
