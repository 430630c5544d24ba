//! `serin replay`: runs a Canary's analysis (every metric, the judge, the thresholds) against
//! Prometheus' history, step by step at the canary's interval, and prints what Serin would have
//! decided; changes nothing; does I/O (files, Prometheus, stdout).
use chrono::{DateTime, Utc};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::query::{FileObjects, Output, documents};
use crate::api::Canary;
use crate::api::canary::CheckRecord;
use crate::core::verdict::Verdict;
use crate::metrics::{Analyzer, MetricsChecker};

/// The most steps one replay runs (a day at 10 s is 8640).
pub const MAX_STEPS: usize = 10_000;

/// Arguments of `serin replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The Canary manifest (the first Canary of the file is used).
    #[arg(long, value_name = "FILE")]
    pub canary: PathBuf,
    /// Start of the window (RFC 3339, e.g. 2026-12-04T21:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub from: String,
    /// End of the window (RFC 3339), included.
    #[arg(long, value_name = "TIME")]
    pub to: String,
    /// The Prometheus holding the history (the controller's --metrics-server), unless the Canary
    /// sets spec.metricsServer.
    #[arg(long, default_value = "http://prometheus:9090")]
    pub prometheus: String,
    /// A file with the MetricTemplate(s) the metrics' `templateRef`s name.
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,
    /// A file with the Secret(s) a template's `secretRef` names.
    #[arg(long, value_name = "FILE")]
    pub secret: Option<PathBuf>,
    /// Provider assumed for Canaries that do not set spec.provider (the controller's --mesh-provider).
    #[arg(long, default_value = "istio")]
    pub mesh_provider: String,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Why `serin replay` could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A time is not RFC 3339.
    #[error("--{0} {1:?} is not an RFC 3339 time (e.g. 2026-12-04T21:00:00Z): {2}")]
    Time(&'static str, String, String),
    /// The window is empty or reversed.
    #[error("--from {0} is after --to {1}")]
    Reversed(String, String),
    /// The window holds too many steps.
    #[error("the window holds {0} steps at the canary's interval; at most {MAX_STEPS}")]
    TooLong(usize),
    /// The files could not be read.
    #[error(transparent)]
    Files(#[from] super::query::Error),
    /// The analyzer could not be built.
    #[error("{0}")]
    Analyzer(String),
}

/// One step of the replay: what the analysis tick at `time` would have concluded.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// When the tick is evaluated (queries run at this time).
    pub time: DateTime<Utc>,
    /// `Pass`, `Fail` or `Hold`.
    pub verdict: String,
    /// The verdict's message (the halt or hold reason).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Failed checks counted so far, as `status.failedChecks` would be.
    pub failed_checks: i32,
    /// Whether the failed checks reached `analysis.threshold` at this step: a rollback.
    pub rollback: bool,
    /// The decision records, as in `status.checks`.
    pub checks: Vec<CheckRecord>,
}

/// The evaluation times: `from`, then every `interval`, up to and including `to`.
pub fn times(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    interval: Duration,
) -> Result<Vec<DateTime<Utc>>, Error> {
    if from > to {
        return Err(Error::Reversed(from.to_rfc3339(), to.to_rfc3339()));
    }
    let step = chrono::Duration::from_std(interval.max(Duration::from_secs(1)))
        .unwrap_or(chrono::Duration::seconds(60));
    let span = (to - from).num_milliseconds();
    let n = usize::try_from(span / step.num_milliseconds().max(1)).unwrap_or(usize::MAX);
    if n >= MAX_STEPS {
        return Err(Error::TooLong(n.saturating_add(1)));
    }
    Ok((0..=n)
        .map(|i| from + step * i32::try_from(i).unwrap_or(i32::MAX))
        .collect())
}

/// Folds verdicts into steps as the controller counts them: a failing tick adds a failed check,
/// a hold or a pass does not; reaching the threshold is a rollback (and the replay's run ends
/// there, as the live one would, but later steps are still shown with the count kept).
pub fn tally(ticks: Vec<(DateTime<Utc>, Verdict, Vec<CheckRecord>)>, threshold: i32) -> Vec<Step> {
    let mut failed = 0;
    ticks
        .into_iter()
        .map(|(time, verdict, checks)| {
            let (word, message) = match verdict {
                Verdict::Pass => ("Pass", None),
                Verdict::Fail(m) => {
                    failed += 1;
                    ("Fail", Some(m))
                }
                Verdict::Hold(m) => ("Hold", Some(m)),
            };
            Step {
                time,
                verdict: word.into(),
                message,
                failed_checks: failed,
                rollback: word == "Fail" && failed == threshold,
                checks,
            }
        })
        .collect()
}

fn parse_time(flag: &'static str, s: &str) -> Result<DateTime<Utc>, Error> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Error::Time(flag, s.to_string(), e.to_string()))
}

/// Runs `serin replay`: exit 0 when the replay ran, 2 when it could not.
pub fn run(args: ReplayArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("serin replay: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(replay(&args)) {
        Ok((canary, steps)) => {
            // Output goes to a pipe that may be closed early (`| head`): write errors are ignored.
            let mut out = std::io::stdout().lock();
            let _ = match args.output {
                Output::Json => writeln!(
                    out,
                    "{}",
                    serde_json::json!({"canary": canary, "steps": steps})
                ),
                Output::Text => write!(out, "{}", text(&canary, &steps)),
            };
            let _ = out.flush();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("serin replay: {e}");
            ExitCode::from(2)
        }
    }
}

/// Replays the analysis; returns `namespace/name` and the steps.
pub async fn replay(args: &ReplayArgs) -> Result<(String, Vec<Step>), Error> {
    let from = parse_time("from", &args.from)?;
    let to = parse_time("to", &args.to)?;
    let shown = args.canary.display().to_string();
    let mut canary: Canary = documents(&args.canary, "Canary")?
        .into_iter()
        .next()
        .ok_or(super::query::Error::NoCanary(shown))?;
    if canary
        .metadata
        .namespace
        .as_deref()
        .is_none_or(str::is_empty)
    {
        canary.metadata.namespace = Some("default".into());
    }
    let id = format!(
        "{}/{}",
        canary.metadata.namespace.as_deref().unwrap_or_default(),
        canary.metadata.name.as_deref().unwrap_or_default()
    );
    let at = times(from, to, canary.spec.interval(Duration::from_secs(1)))?;
    let mut ticks = Vec::with_capacity(at.len());
    for t in at {
        let objects = FileObjects::read(args.template.as_deref(), args.secret.as_deref())?;
        let analyzer = Analyzer::new(objects, &args.prometheus, &args.mesh_provider)
            .map_err(|e| Error::Analyzer(e.to_string()))?
            .at(t);
        let report = analyzer.check(&canary).await;
        ticks.push((t, report.verdict, report.records));
    }
    Ok((id, tally(ticks, canary.spec.threshold())))
}

/// The text output: one block per step, one line per decision record.
pub fn text(canary: &str, steps: &[Step]) -> String {
    let num = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
    let mut s = format!("canary: {canary}\n");
    for st in steps {
        s.push_str(&format!(
            "{}  {}  failedChecks {}{}{}\n",
            st.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            st.verdict,
            st.failed_checks,
            if st.rollback { "  ROLLBACK" } else { "" },
            st.message
                .as_deref()
                .map(|m| format!("  {m}"))
                .unwrap_or_default()
        ));
        for r in &st.checks {
            s.push_str(&format!(
                "  {:<22} {:<6} {:<18} value {} sample {} range {}..{}",
                r.name,
                r.kind,
                r.outcome,
                num(r.value),
                num(r.sample),
                num(r.min),
                num(r.max)
            ));
            if let (Some(e), Some(p)) = (r.effect, r.p_value) {
                let i = r.interval.clone().unwrap_or_default();
                s.push_str(&format!(
                    " effect {e:.4} interval [{}] p-value {p:.3e}",
                    i.iter()
                        .map(|x| format!("{x:.4}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            s.push('\n');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_time("from", s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn steps_run_from_the_start_at_the_interval_up_to_the_end_included() {
        let got = times(
            t("2026-12-04T21:00:00Z"),
            t("2026-12-04T21:00:30Z"),
            Duration::from_secs(10),
        )
        .unwrap_or_default();
        let want: Vec<_> = ["00", "10", "20", "30"]
            .iter()
            .map(|s| t(&format!("2026-12-04T21:00:{s}Z")))
            .collect();
        assert_eq!(got, want);
        let one = times(
            t("2026-12-04T21:00:00Z"),
            t("2026-12-04T21:00:05Z"),
            Duration::from_secs(10),
        )
        .unwrap_or_default();
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn bad_windows_are_refused_clearly() {
        let e = times(
            t("2026-12-04T22:00:00Z"),
            t("2026-12-04T21:00:00Z"),
            Duration::from_secs(10),
        )
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("--from 2026-12-04T22:00:00+00:00 is after --to 2026-12-04T21:00:00+00:00")
        );
        let e = times(
            t("2026-01-01T00:00:00Z"),
            t("2026-12-01T00:00:00Z"),
            Duration::from_secs(1),
        );
        assert!(matches!(e, Err(Error::TooLong(_))));
        let e = parse_time("to", "yesterday").err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.starts_with("--to \"yesterday\" is not an RFC 3339 time")),
            "{e:?}"
        );
    }

    #[test]
    fn failing_ticks_count_up_to_the_threshold_and_holds_do_not() {
        let at = t("2026-12-04T21:00:00Z");
        let ticks = vec![
            (at, Verdict::Pass, vec![]),
            (at, Verdict::Hold("few".into()), vec![]),
            (at, Verdict::Fail("slow".into()), vec![]),
            (at, Verdict::Fail("slow".into()), vec![]),
        ];
        let steps = tally(ticks, 2);
        let got: Vec<_> = steps
            .iter()
            .map(|s| (s.verdict.as_str(), s.failed_checks, s.rollback))
            .collect();
        assert_eq!(
            got,
            [
                ("Pass", 0, false),
                ("Hold", 0, false),
                ("Fail", 1, false),
                ("Fail", 2, true)
            ]
        );
    }
}
