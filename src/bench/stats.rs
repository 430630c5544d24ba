//! The benchmark's arithmetic (pure, no I/O): Prometheus histogram parsing and quantiles, writes
//! per traffic step, ratios.
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// Cumulative buckets `(le, count)` in ascending `le`, `+Inf` last.
pub type Buckets = Vec<(f64, f64)>;

/// The buckets of the histogram `name` (no labels) in a Prometheus text exposition.
pub fn parse_histogram(text: &str, name: &str) -> Buckets {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut out: Buckets = text
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (le, rest) = rest.split_once("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count = rest.split_whitespace().next()?.parse().ok()?;
            Some((le, count))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The value of the unlabelled gauge or counter `name` in a Prometheus text exposition.
pub fn parse_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|v| v.split_whitespace().next()?.parse().ok())
}

/// `after − before`, bucket by bucket (`before` may be empty: nothing counted yet).
pub fn histogram_delta(before: &Buckets, after: &Buckets) -> Buckets {
    after
        .iter()
        .map(|(le, n)| {
            let was = before
                .iter()
                .find(|(l, _)| l == le)
                .map_or(0.0, |(_, c)| *c);
            (*le, (n - was).max(0.0))
        })
        .collect()
}

/// The `q` quantile of cumulative buckets, interpolated linearly inside its bucket as Prometheus'
/// `histogram_quantile` does; `None` without observations. In the `+Inf` bucket it is the
/// highest finite bound.
pub fn quantile(buckets: &Buckets, q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let in_bucket = count - lower.1;
            let frac = if in_bucket > 0.0 {
                (rank - lower.1) / in_bucket
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * frac);
        }
        lower = (le, count);
    }
    Some(lower.0)
}

/// The canary an object written for it belongs to: `app-1-primary`, `app-1-canary` and the
/// Event `app-1.1842f…` all belong to `app-1`.
pub fn canary_of(object: &str) -> &str {
    let base = object.split('.').next().unwrap_or(object);
    base.strip_suffix("-primary")
        .or_else(|| base.strip_suffix("-canary"))
        .unwrap_or(base)
}

/// Writes per canary per traffic step: the writes of each canary after its first traffic step was
/// seen and up to its last one (steps 2 to `steps`, whose writes all fall in that window), over
/// every canary with both steps seen. `None` with fewer than 2 steps or no such canary.
pub fn writes_per_step(
    writes: &[(String, DateTime<Utc>)],
    windows: &HashMap<String, (DateTime<Utc>, DateTime<Utc>)>,
    steps: u32,
) -> Option<f64> {
    if steps < 2 || windows.is_empty() {
        return None;
    }
    let counted = writes
        .iter()
        .filter(|(canary, at)| {
            windows
                .get(canary)
                .is_some_and(|(first, last)| first < at && at <= last)
        })
        .count();
    Some(counted as f64 / (windows.len() as f64 * f64::from(steps - 1)))
}

/// `a / b` when both are known and `b` is not zero (`1` when both are zero).
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a?, b?) {
        (0.0, 0.0) => Some(1.0),
        (_, 0.0) => None,
        (a, b) => Some(a / b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x_seconds lag\n# TYPE x_seconds histogram\nx_seconds_sum 1.5\nx_seconds_count 10\n\
x_seconds_bucket{le=\"0.01\"} 2\nx_seconds_bucket{le=\"0.1\"} 9\nx_seconds_bucket{le=\"1.0\"} 10\nx_seconds_bucket{le=\"+Inf\"} 10\n\
other_bucket{le=\"0.01\"} 99\n";

    #[test]
    fn a_gauge_is_read_by_its_exact_name() {
        let text = "# TYPE heap_bytes gauge\nheap_bytes_total 7\nheap_bytes 12345\n";
        assert_eq!(parse_value(text, "heap_bytes"), Some(12345.0));
        assert_eq!(parse_value(text, "heap"), None);
        assert_eq!(parse_value(TEXT, "x_seconds_count"), Some(10.0));
    }

    #[test]
    fn histograms_parse_by_name_and_subtract_bucket_by_bucket() {
        let after = parse_histogram(TEXT, "x_seconds");
        assert_eq!(
            after,
            vec![(0.01, 2.0), (0.1, 9.0), (1.0, 10.0), (f64::INFINITY, 10.0)]
        );
        let before = vec![(0.01, 1.0), (0.1, 1.0), (1.0, 1.0), (f64::INFINITY, 1.0)];
        let d = histogram_delta(&before, &after);
        assert_eq!(d[0], (0.01, 1.0));
        assert_eq!(d[3], (f64::INFINITY, 9.0));
        assert_eq!(histogram_delta(&vec![], &after), after);
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let b = parse_histogram(TEXT, "x_seconds");
        // rank 5 of 10 lies 3/7 of the way through (0.01, 0.1].
        let p50 = quantile(&b, 0.5).unwrap_or_default();
        assert!((p50 - (0.01 + 0.09 * 3.0 / 7.0)).abs() < 1e-9, "{p50}");
        // rank 9.9 lies in (0.1, 1.0].
        let p99 = quantile(&b, 0.99).unwrap_or_default();
        assert!(p99 > 0.1 && p99 <= 1.0, "{p99}");
        assert_eq!(quantile(&vec![(1.0, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
        assert_eq!(
            quantile(&vec![(1.0, 0.0), (f64::INFINITY, 4.0)], 0.5),
            Some(1.0),
            "beyond the last bound: the highest finite bound"
        );
    }

    #[test]
    fn generated_objects_and_events_belong_to_their_canary() {
        assert_eq!(canary_of("app-1-primary"), "app-1");
        assert_eq!(canary_of("app-1-canary"), "app-1");
        assert_eq!(canary_of("app-12.1842f0a9c3d"), "app-12");
        assert_eq!(canary_of("app-3"), "app-3");
    }

    #[test]
    fn writes_per_step_count_inside_each_canarys_window() {
        let t = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).unwrap_or_default();
        let windows = HashMap::from([("a".to_string(), (t(10), t(30)))]);
        let writes = vec![
            ("a".to_string(), t(10)), // the first step's own status write: outside
            ("a".to_string(), t(20)),
            ("a".to_string(), t(21)),
            ("a".to_string(), t(30)),
            ("a".to_string(), t(31)), // promotion: outside
            ("b".to_string(), t(20)), // no window
        ];
        assert_eq!(writes_per_step(&writes, &windows, 3), Some(1.5));
        assert_eq!(writes_per_step(&writes, &windows, 1), None);
        assert_eq!(writes_per_step(&writes, &HashMap::new(), 3), None);
    }

    #[test]
    fn ratios_need_both_figures() {
        assert_eq!(ratio(Some(2.0), Some(4.0)), Some(0.5));
        assert_eq!(ratio(Some(0.0), Some(0.0)), Some(1.0));
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
    }
}
