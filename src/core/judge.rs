//! The statistical judge: pure comparisons of the canary with the primary over the same window
//! (error rate by a two-proportion interval, latency by Mann–Whitney U and a tail test on
//! histogram buckets), each deciding Pass, Fail or Inconclusive with its evidence.
//!
//! Counts arrive as floats because Prometheus' `increase()` extrapolates; they are rounded to
//! whole requests before any test. Nothing here reads a clock or does I/O.
use statrs::distribution::{ContinuousCDF, Normal};

/// What the judge concluded for one metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The canary is no worse than the primary beyond the tolerance.
    Pass,
    /// The canary is worse than the primary beyond the tolerance, with the configured confidence.
    Fail,
    /// A side has fewer requests than the minimum sample: nothing can be concluded yet.
    Inconclusive,
}

impl Decision {
    /// The wire spelling, shared with `status.checks[].outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "Pass",
            Self::Fail => "Fail",
            Self::Inconclusive => "Inconclusive",
        }
    }
}

/// How strict the judge is (`analysis.judge`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// One-sided confidence required to fail a canary, in (0.5, 1); default 0.95.
    pub confidence: f64,
    /// How much worse than the primary still passes, in percent; default 10.
    pub tolerance_percent: f64,
    /// Fewer requests than this on either side gives Inconclusive.
    pub min_samples: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            confidence: 0.95,
            tolerance_percent: 10.0,
            min_samples: 1.0,
        }
    }
}

impl Settings {
    /// The one-sided critical value z for the confidence (1.645 at 0.95).
    fn z(&self) -> f64 {
        std_normal().inverse_cdf(self.confidence.clamp(0.5, 0.999_999))
    }

    fn alpha(&self) -> f64 {
        1.0 - self.confidence.clamp(0.5, 0.999_999)
    }
}

fn std_normal() -> Normal {
    // Mean 0 and standard deviation 1 are always valid parameters.
    Normal::standard()
}

/// Events out of a total: errors out of requests, or requests slower than a bound.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Proportion {
    pub events: f64,
    pub total: f64,
}

impl Proportion {
    pub fn new(events: f64, total: f64) -> Self {
        let total = whole(total);
        Self {
            events: whole(events).min(total),
            total,
        }
    }

    fn rate(&self) -> f64 {
        if self.total > 0.0 {
            self.events / self.total
        } else {
            0.0
        }
    }

    /// Wilson's score interval at critical value `z`: it stays inside [0, 1] and behaves at
    /// zero events, where the textbook Wald interval collapses to a point.
    fn wilson(&self, z: f64) -> (f64, f64) {
        let n = self.total;
        if n <= 0.0 {
            return (0.0, 1.0);
        }
        let p = self.rate();
        let z2 = z * z;
        let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
        let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
        ((centre - half).max(0.0), (centre + half).min(1.0))
    }
}

/// Counts are whole requests; negative or non-finite counts (counter resets) are none.
fn whole(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 {
        x.round()
    } else {
        0.0
    }
}

/// The error-rate comparison: effect is the difference of rates (canary − primary).
#[derive(Clone, Debug, PartialEq)]
pub struct RateJudgement {
    pub decision: Decision,
    pub canary: Proportion,
    pub primary: Proportion,
    /// Canary rate minus primary rate.
    pub effect: f64,
    /// Newcombe's one-sided-per-bound interval for the difference at the configured confidence.
    pub interval: (f64, f64),
    /// The largest difference that still passes: the primary's rate times the tolerance.
    pub margin: f64,
    /// One-sided pooled two-proportion z-test that the canary's rate is larger.
    pub p_value: f64,
    /// Why, in one line (for the decision record and the Event).
    pub reason: String,
}

/// Newcombe's hybrid score interval (his method 10) for p1 − p2, from the two Wilson intervals.
pub fn newcombe(canary: &Proportion, primary: &Proportion, z: f64) -> (f64, f64) {
    let (p1, p2) = (canary.rate(), primary.rate());
    let (l1, u1) = canary.wilson(z);
    let (l2, u2) = primary.wilson(z);
    let d = p1 - p2;
    let lower = d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt();
    let upper = d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt();
    (lower, upper)
}

/// The one-sided p-value of the pooled two-proportion z-test that the canary's rate is larger.
/// Both rates zero (or one) is no evidence at all: 1.
pub fn two_proportion_p(canary: &Proportion, primary: &Proportion) -> f64 {
    let (n1, n2) = (canary.total, primary.total);
    if n1 <= 0.0 || n2 <= 0.0 {
        return 1.0;
    }
    let pooled = (canary.events + primary.events) / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se <= 0.0 || !se.is_finite() {
        return 1.0;
    }
    let z = (canary.rate() - primary.rate()) / se;
    std_normal().sf(z)
}

/// Judges the canary's error rate against the primary's.
///
/// Fail when the whole interval lies above the margin (evidence that the canary is worse beyond
/// the tolerance); Inconclusive when a side is below the minimum sample; Pass otherwise. The judge
/// fails a canary only on evidence: a worse-looking point estimate on little data passes, and the
/// minimum sample is what guards against deciding on too little.
pub fn error_rate(canary: Proportion, primary: Proportion, s: &Settings) -> RateJudgement {
    let z = s.z();
    let effect = canary.rate() - primary.rate();
    let interval = newcombe(&canary, &primary, z);
    let margin = primary.rate() * s.tolerance_percent / 100.0;
    let p_value = two_proportion_p(&canary, &primary);
    let small = canary.total < s.min_samples.max(1.0) || primary.total < s.min_samples.max(1.0);
    let (decision, reason) = if small {
        (
            Decision::Inconclusive,
            format!(
                "too few requests to compare: canary {}, primary {}, need {}",
                canary.total,
                primary.total,
                s.min_samples.max(1.0)
            ),
        )
    } else if interval.0 > margin {
        (
            Decision::Fail,
            format!(
                "error rate {} vs primary {}: worse by {} (interval {}..{}), beyond the {}% tolerance",
                pct(canary.rate()),
                pct(primary.rate()),
                pct(effect),
                pct(interval.0),
                pct(interval.1),
                s.tolerance_percent
            ),
        )
    } else {
        (
            Decision::Pass,
            format!(
                "error rate {} vs primary {}: no evidence of more errors beyond the {}% tolerance (interval {}..{})",
                pct(canary.rate()),
                pct(primary.rate()),
                s.tolerance_percent,
                pct(interval.0),
                pct(interval.1)
            ),
        )
    };
    RateJudgement {
        decision,
        canary,
        primary,
        effect,
        interval,
        margin,
        p_value,
        reason,
    }
}

fn pct(x: f64) -> String {
    format!("{:.3}%", x * 100.0)
}

/// A latency histogram over one window: `(le, cumulative count)` pairs as Prometheus'
/// `sum by (le) (increase(..._bucket[w]))` returns them, `le` may be `+Inf`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
}

impl Histogram {
    pub fn new(mut buckets: Vec<(f64, f64)>) -> Self {
        buckets.retain(|(le, _)| !le.is_nan());
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets.dedup_by(|a, b| a.0 == b.0);
        // Cumulative counts never decrease; a lower one after a scrape race is the previous.
        let mut max = 0.0_f64;
        for (_, c) in buckets.iter_mut() {
            max = max.max(whole(*c));
            *c = max;
        }
        Self { buckets }
    }

    /// Requests observed (the `+Inf` bucket, or the last one).
    pub fn total(&self) -> f64 {
        self.buckets.last().map(|b| b.1).unwrap_or(0.0)
    }

    /// The cumulative count at `le`: the step function between the known boundaries.
    fn cumulative_at(&self, le: f64) -> f64 {
        self.buckets
            .iter()
            .take_while(|b| b.0 <= le)
            .last()
            .map(|b| b.1)
            .unwrap_or(0.0)
    }

    /// The q-quantile, estimated as Prometheus' `histogram_quantile` does: linear within the
    /// bucket, the first bucket starting at 0, and the highest finite bound for the `+Inf` bucket.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total <= 0.0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * total;
        let mut prev = (0.0_f64, 0.0_f64);
        for &(le, c) in &self.buckets {
            if c >= rank && c > prev.1 {
                if le.is_infinite() {
                    return Some(prev.0);
                }
                return Some(prev.0 + (le - prev.0) * (rank - prev.1) / (c - prev.1));
            }
            prev = (le, c);
        }
        Some(prev.0)
    }
}

/// Mann–Whitney U for "the canary is slower", from bucket counts on shared boundaries.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MannWhitney {
    /// U of the canary: pairs where the canary is slower, plus half the tied pairs.
    pub u: f64,
    /// One-sided p-value (normal approximation, tie-corrected, continuity-corrected).
    pub p_value: f64,
    /// Probability of superiority U / (n1 n2): 0.5 when neither is slower.
    pub superiority: f64,
}

/// Mann–Whitney U on two histograms. Every observation in a bucket is tied with the others in
/// it, so the variance is tie-corrected; when everything is tied the variance is zero and there
/// is no evidence of a difference (p = 1), instead of the NaN that hid regressions in Kayenta
/// (spinnaker/kayenta#780).
pub fn mann_whitney(canary: &Histogram, primary: &Histogram) -> MannWhitney {
    let bounds = shared_bounds(canary, primary);
    let (n1, n2) = (canary.total(), primary.total());
    let (mut u, mut below2, mut ties) = (0.0, 0.0, 0.0);
    let (mut prev1, mut prev2) = (0.0, 0.0);
    for le in bounds {
        let (c1, c2) = (canary.cumulative_at(le), primary.cumulative_at(le));
        let (k1, k2) = (c1 - prev1, c2 - prev2);
        u += k1 * (below2 + 0.5 * k2);
        let t = k1 + k2;
        ties += t * t * t - t;
        below2 += k2;
        (prev1, prev2) = (c1, c2);
    }
    let big_n = n1 + n2;
    let pairs = n1 * n2;
    if pairs <= 0.0 {
        return MannWhitney {
            u,
            p_value: 1.0,
            superiority: 0.5,
        };
    }
    let variance = pairs / 12.0 * ((big_n + 1.0) - ties / (big_n * (big_n - 1.0)));
    let p_value = if variance > 0.0 {
        let z = (u - pairs / 2.0 - 0.5) / variance.sqrt();
        std_normal().sf(z)
    } else {
        1.0
    };
    MannWhitney {
        u,
        p_value,
        superiority: u / pairs,
    }
}

fn shared_bounds(a: &Histogram, b: &Histogram) -> Vec<f64> {
    let mut all: Vec<f64> = a.buckets.iter().chain(&b.buckets).map(|x| x.0).collect();
    all.sort_by(f64::total_cmp);
    all.dedup();
    all
}

/// The latency comparison at one quantile.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencyJudgement {
    pub decision: Decision,
    pub quantile: f64,
    pub canary_quantile: Option<f64>,
    pub primary_quantile: Option<f64>,
    /// canary quantile / primary quantile − 1 (0.5 is "50% slower").
    pub effect: f64,
    /// The whole-distribution shift test.
    pub shift: MannWhitney,
    /// The tail test: requests slower than the primary's quantile bucket, canary vs primary.
    pub tail: RateJudgement,
    /// The smaller of the two tests' p-values, Bonferroni-adjusted (×2).
    pub p_value: f64,
    /// The tail test's interval for the difference in the share of slow requests.
    pub interval: (f64, f64),
    pub reason: String,
}

/// Judges the canary's latency at quantile `q` (0.99 for p99) against the primary's.
///
/// Two tests look for evidence that the canary is slower: Mann–Whitney U sees a shift of the
/// whole distribution, and a two-proportion test on the share of requests above the bucket
/// that holds the primary's quantile sees a longer tail (which U alone misses). Fail needs the
/// effect beyond the tolerance and either test significant after a Bonferroni correction;
/// anything short of that passes (Inconclusive only below the minimum sample).
pub fn latency(canary: &Histogram, primary: &Histogram, q: f64, s: &Settings) -> LatencyJudgement {
    let (cq, pq) = (canary.quantile(q), primary.quantile(q));
    let effect = match (cq, pq) {
        (Some(c), Some(p)) if p > 0.0 => c / p - 1.0,
        (Some(c), Some(_)) if c > 0.0 => f64::INFINITY,
        _ => 0.0,
    };
    let shift = mann_whitney(canary, primary);
    // The bound of the bucket that holds the primary's quantile: requests above it are "slow".
    let bound = pq
        .and_then(|p| {
            primary
                .buckets
                .iter()
                .map(|b| b.0)
                .find(|le| *le >= p && le.is_finite())
        })
        .unwrap_or(f64::INFINITY);
    let above = |h: &Histogram| Proportion::new(h.total() - h.cumulative_at(bound), h.total());
    let tail_settings = Settings {
        tolerance_percent: 0.0,
        // Each of the two tests runs at half the error budget (Bonferroni).
        confidence: 1.0 - s.alpha() / 2.0,
        ..*s
    };
    let tail = error_rate(above(canary), above(primary), &tail_settings);
    let p_value = (2.0 * shift.p_value.min(tail.p_value)).min(1.0);
    let tolerance = s.tolerance_percent / 100.0;
    let small = canary.total() < s.min_samples.max(1.0) || primary.total() < s.min_samples.max(1.0);
    let significant = shift.p_value < s.alpha() / 2.0 || tail.decision == Decision::Fail;
    let show = |x: Option<f64>| x.map_or("none".to_string(), |v| format!("{v:.4}s"));
    let (decision, reason) = if small {
        (
            Decision::Inconclusive,
            format!(
                "too few requests to compare: canary {}, primary {}, need {}",
                canary.total(),
                primary.total(),
                s.min_samples.max(1.0)
            ),
        )
    } else {
        let versus = format!("p{} {} vs primary {}", q * 100.0, show(cq), show(pq));
        let (percent, tolerance_percent) = (effect * 100.0, s.tolerance_percent);
        if effect > tolerance && significant {
            (
                Decision::Fail,
                format!(
                    "{versus}: {percent:.0}% slower, beyond the {tolerance_percent}% tolerance \
                     (p = {p_value:.2e})"
                ),
            )
        } else {
            (
                Decision::Pass,
                format!(
                    "{versus}: {percent:+.0}%, no evidence of a slowdown beyond the \
                     {tolerance_percent}% tolerance (p = {p_value:.2})"
                ),
            )
        }
    };
    LatencyJudgement {
        decision,
        quantile: q,
        canary_quantile: cq,
        primary_quantile: pq,
        effect,
        shift,
        interval: tail.interval,
        tail,
        p_value,
        reason,
    }
}

#[cfg(test)]
#[path = "judge_tests.rs"]
mod tests;
