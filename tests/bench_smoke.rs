//! `serin bench` end to end at 3 canaries with a 1 s interval: the JSON report and the table are
//! well-formed and every canary rolled out. No timing is asserted: figures belong to the bench.
use std::process::Command;

#[test]
fn bench_at_three_canaries_reports_every_figure() -> anyhow::Result<()> {
    let out = Command::new(env!("CARGO_BIN_EXE_serin"))
        .args([
            "bench",
            "--canaries",
            "3",
            "--interval",
            "1s",
            "--steps",
            "2",
        ])
        .args(["-o", "json"])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "serin bench failed:\n{stderr}");
    let report: serin::bench::Report = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report.runs.len(), 1, "{report:?}");
    let r = &report.runs[0];
    assert_eq!((r.canaries, r.steps), (3, 2));
    assert_eq!(r.not_succeeded, 0, "every canary rolls out:\n{stderr}");
    assert!(r.init_secs > 0.0 && r.rollout_secs > 0.0, "{r:?}");
    assert_eq!(r.ideal_secs, 2.0, "steps × interval");
    assert!(
        (r.schedule_ratio * 3.0 - r.rollout_secs).abs() < 1e-6,
        "against (steps + 1) × interval: {r:?}"
    );
    assert!(
        r.rss_rest_mib > 0.0 && r.rss_peak_mib >= r.rss_rest_mib,
        "{r:?}"
    );
    assert!(
        r.writes_by_resource.contains_key("patch canaries/status"),
        "{:?}",
        r.writes_by_resource
    );
    assert!(r.writes_per_step.is_some(), "two steps give a window");
    assert!(
        r.tick_lag_samples >= 3,
        "one measured tick per canary at least: {r:?}"
    );
    assert!(r.tick_lag_p50_ms.is_some() && r.tick_lag_p99_ms >= r.tick_lag_p50_ms);

    let table = serin::bench::table(&report);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "header, one row, load line:\n{table}");
    assert!(lines[0].contains("canaries") && lines[1].trim_start().starts_with("3 "));
    let same = serin::bench::compare(&report, &report);
    assert!(
        same.lines().nth(2).is_some_and(|l| l.contains("1.00")),
        "{same}"
    );
    Ok(())
}
