//! Table tests of the judge against reference values computed with SciPy 1.17.1 and statsmodels
//! 0.15.0 (the calls are written next to each value), and hand-checked histogram quantiles.
use super::*;

/// Prometheus' default-ish latency buckets, in seconds.
const LE: [f64; 9] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, f64::INFINITY];

/// A histogram from per-bucket (not cumulative) counts on `LE`.
fn hist(counts: [f64; 9]) -> Histogram {
    let mut cum = 0.0;
    Histogram::new(
        LE.iter()
            .zip(counts)
            .map(|(le, c)| {
                cum += c;
                (*le, cum)
            })
            .collect(),
    )
}

const PRIMARY: [f64; 9] = [10., 40., 100., 200., 100., 40., 8., 2., 0.];

fn close(actual: f64, expected: f64, rel: f64) {
    let tol = rel * expected.abs().max(1e-300);
    assert!(
        (actual - expected).abs() <= tol,
        "{actual} is not within {rel} (relative) of {expected}"
    );
}

// SciPy: x = np.repeat(np.arange(9), canary); y = np.repeat(np.arange(9), primary);
// scipy.stats.mannwhitneyu(x, y, alternative='greater', use_continuity=True, method='asymptotic')
/// (case, canary buckets, primary buckets, U, one-sided p).
type MannWhitneyCase = (&'static str, [f64; 9], [f64; 9], f64, f64);

#[test]
fn mann_whitney_matches_scipy_on_bucketed_data_with_ties() {
    let table: [MannWhitneyCase; 4] = [
        ("same", PRIMARY, PRIMARY, 125000.0, 0.5000455652985952),
        (
            "shifted one bucket",
            [0., 10., 40., 100., 200., 100., 40., 8., 2.],
            PRIMARY,
            181052.0,
            5.055406155592012e-37,
        ),
        (
            "small samples",
            [0., 0., 1., 2., 1., 1., 0., 0., 0.],
            [1., 2., 1., 1., 0., 0., 0., 0., 0.],
            22.5,
            0.021609793586895437,
        ),
        (
            "longer tail only",
            [10., 40., 100., 200., 95., 30., 5., 10., 10.],
            PRIMARY,
            125810.0,
            0.4266777502276159,
        ),
    ];
    for (name, canary, primary, u, p) in table {
        let mw = mann_whitney(&hist(canary), &hist(primary));
        assert_eq!(mw.u, u, "{name}: U");
        close(mw.p_value, p, 1e-6);
    }
}

// SciPy returns p = 1.0 for [3]*50 vs [3]*70; Kayenta's NaN on all-tied data hid regressions
// (spinnaker/kayenta#780). Here everything tied is "no evidence", never NaN.
#[test]
fn all_tied_data_is_no_evidence_not_nan() {
    let one = |n| {
        let mut c = [0.0; 9];
        c[3] = n;
        hist(c)
    };
    let mw = mann_whitney(&one(50.0), &one(70.0));
    assert_eq!(mw.u, 1750.0);
    assert_eq!(mw.p_value, 1.0);
    assert_eq!(mw.superiority, 0.5);
    let j = latency(&one(50.0), &one(70.0), 0.99, &Settings::default());
    assert_eq!(j.decision, Decision::Pass, "{}", j.reason);
}

// statsmodels: confint_proportions_2indep(e1, n1, e2, n2, method='newcomb', compare='diff',
// alpha=0.10) (each bound one-sided at 95%), and
// proportions_ztest([e1, e2], [n1, n2], alternative='larger') for the p-value.
#[test]
fn newcombe_interval_and_z_test_match_statsmodels() {
    let table = [
        (
            1.,
            200.,
            0.,
            200.,
            -0.008900726289523205,
            0.022097436443701848,
            0.15835241197345956,
        ),
        (
            10.,
            200.,
            0.,
            200.,
            0.026055548077351054,
            0.08189183291820942,
            0.0006810523357921015,
        ),
        (
            2.,
            40.,
            1.,
            400.,
            0.013087398750869408,
            0.13785269575381112,
            0.0002499628818533226,
        ),
        (
            30.,
            1000.,
            10.,
            1000.,
            0.009834020074792392,
            0.030979120977418954,
            0.0007006507904801069,
        ),
        (
            5.,
            1000.,
            5.,
            1000.,
            -0.005829507229309385,
            0.005829507229309385,
            0.5,
        ),
    ];
    let z = Settings::default().z();
    close(z, 1.6448536269514722, 1e-9); // scipy.stats.norm.ppf(0.95)
    for (e1, n1, e2, n2, lo, hi, p) in table {
        let (c, pr) = (Proportion::new(e1, n1), Proportion::new(e2, n2));
        let (l, u) = newcombe(&c, &pr, z);
        close(l, lo, 1e-6);
        close(u, hi, 1e-6);
        close(two_proportion_p(&c, &pr), p, 1e-6);
    }
}

#[test]
fn wilson_interval_at_zero_events_matches_statsmodels() {
    // proportion_confint(0, 200, alpha=0.10, method='wilson') = (0.0, 0.013347160654775633)
    let (l, u) = Proportion::new(0.0, 200.0).wilson(Settings::default().z());
    assert!(l.abs() < 1e-15, "lower bound {l}");
    close(u, 0.013347160654775633, 1e-9);
}

#[test]
fn error_rate_decisions() {
    let s = Settings {
        min_samples: 100.0,
        ..Settings::default()
    };
    let table = [
        // (canary errors, requests, primary errors, requests, decision)
        (10., 200., 0., 200., Decision::Fail),
        (30., 1000., 10., 1000., Decision::Fail),
        (5., 1000., 5., 1000., Decision::Pass),
        // One error where the primary had none is no evidence of a regression.
        (1., 200., 0., 200., Decision::Pass),
        // The low-traffic case of the issue: 2 errors in 40 requests is below the minimum.
        (2., 40., 1., 400., Decision::Inconclusive),
        (0., 0., 0., 1000., Decision::Inconclusive),
    ];
    for (e1, n1, e2, n2, want) in table {
        let j = error_rate(Proportion::new(e1, n1), Proportion::new(e2, n2), &s);
        assert_eq!(j.decision, want, "{e1}/{n1} vs {e2}/{n2}: {}", j.reason);
        assert!(!j.reason.is_empty());
    }
}

#[test]
fn tolerance_lets_a_slightly_worse_error_rate_pass() {
    // 11% vs 10% errors on 100,000 requests each is significant, but only 10% worse.
    let c = Proportion::new(11_000.0, 100_000.0);
    let p = Proportion::new(10_000.0, 100_000.0);
    let strict = Settings {
        tolerance_percent: 0.0,
        ..Settings::default()
    };
    assert_eq!(error_rate(c, p, &strict).decision, Decision::Fail);
    let lenient = Settings {
        tolerance_percent: 15.0,
        ..Settings::default()
    };
    assert_eq!(error_rate(c, p, &lenient).decision, Decision::Pass);
}

// By hand, as histogram_quantile computes it: total 500, rank 495 falls in (0.25, 0.5] between
// cumulative 490 and 498, so 0.25 + 0.25 × 5/8 = 0.40625; the median, rank 250, falls in
// (0.025, 0.05] between 150 and 350: 0.025 + 0.025 × 100/200 = 0.0375.
#[test]
fn quantiles_interpolate_as_histogram_quantile() {
    let h = hist(PRIMARY);
    close(h.quantile(0.99).unwrap_or_default(), 0.40625, 1e-12);
    close(h.quantile(0.5).unwrap_or_default(), 0.0375, 1e-12);
    // A rank in the +Inf bucket answers the highest finite bound.
    let tail = hist([0., 0., 0., 0., 0., 0., 0., 1., 99.]);
    assert_eq!(tail.quantile(0.99), Some(1.0));
    assert_eq!(Histogram::default().quantile(0.99), None);
}

#[test]
fn unsorted_and_non_monotonic_buckets_are_normalised() {
    let h = Histogram::new(vec![
        (f64::INFINITY, 10.0),
        (0.1, 4.0),
        (0.5, 3.0), // a scrape race: lower than the bucket below it
        (f64::NAN, 7.0),
    ]);
    assert_eq!(
        h.buckets,
        vec![(0.1, 4.0), (0.5, 4.0), (f64::INFINITY, 10.0)]
    );
    assert_eq!(h.total(), 10.0);
}

#[test]
fn twice_the_primary_latency_fails_and_equal_latency_passes() {
    let s = Settings {
        min_samples: 100.0,
        ..Settings::default()
    };
    let slower = hist([0., 10., 40., 100., 200., 100., 40., 8., 2.]);
    let j = latency(&slower, &hist(PRIMARY), 0.99, &s);
    assert_eq!(j.decision, Decision::Fail, "{}", j.reason);
    assert!(j.effect > 0.9, "p99 ratio − 1 = {}", j.effect);
    assert!(j.p_value < 0.05);

    let j = latency(&hist(PRIMARY), &hist(PRIMARY), 0.99, &s);
    assert_eq!(j.decision, Decision::Pass, "{}", j.reason);
    assert_eq!(j.effect, 0.0);
}

#[test]
fn a_longer_tail_alone_fails_through_the_tail_test() {
    // Mann–Whitney alone says p = 0.43 here (see the SciPy table); the tail test sees that 20 of
    // 500 canary requests are slower than the bucket of the primary's p99, against 2 of 500.
    let canary = hist([10., 40., 100., 200., 95., 30., 5., 10., 10.]);
    let j = latency(&canary, &hist(PRIMARY), 0.99, &Settings::default());
    assert!(j.shift.p_value > 0.4);
    assert_eq!(j.tail.decision, Decision::Fail, "{}", j.tail.reason);
    assert_eq!(j.decision, Decision::Fail, "{}", j.reason);
}

#[test]
fn a_faster_canary_passes_and_a_tiny_sample_is_inconclusive() {
    let faster = hist([40., 100., 200., 100., 40., 10., 8., 2., 0.]);
    let s = Settings {
        min_samples: 100.0,
        ..Settings::default()
    };
    assert_eq!(
        latency(&faster, &hist(PRIMARY), 0.99, &s).decision,
        Decision::Pass
    );
    let tiny = hist([0., 0., 0., 0., 0., 0., 0., 5., 0.]);
    let j = latency(&tiny, &hist(PRIMARY), 0.99, &s);
    assert_eq!(j.decision, Decision::Inconclusive, "{}", j.reason);
}
