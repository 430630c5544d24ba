//! `serin replay`: runs a Canary's analysis (every metric, the judge, the thresholds) against
//! Prometheus' history, step by step at the canary's interval, and prints what Serin would have
//! decided; changes nothing; does I/O (files or the Kubernetes API, Prometheus, stdout).
use chrono::{DateTime, Utc};
use clap::Args;
use k8s_openapi::api::core::v1::Secret;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use super::plugin::{self, KubeArgs};
use super::query::{FileObjects, Output};
use crate::api::canary::CheckRecord;
use crate::api::time::from_time;
use crate::api::{Canary, CanaryPhase, MetricTemplate};
use crate::core::verdict::Verdict;
use crate::metrics::{Analyzer, MetricsChecker};

/// The most steps one replay runs (a day at 10 s is 8640).
pub const MAX_STEPS: usize = 10_000;

/// Arguments of `serin replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The Canary: a manifest file (its first Canary is used), or, with --kubeconfig, --context or
    /// -n, the name of a Canary in the cluster (read with its MetricTemplates and their Secrets).
    #[arg(long, value_name = "FILE|NAME")]
    pub canary: String,
    /// Start of the window (RFC 3339, e.g. 2026-12-04T21:00:00Z). Default: the start of the
    /// Canary's last run (`status.runStartTime`, else `status.lastRunStartTime`).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// End of the window (RFC 3339), included. Default: now while the run goes on, else when it
    /// ended (the `Promoted` condition's `lastTransitionTime`).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// The Prometheus holding the history (the controller's --metrics-server), unless the Canary
    /// sets spec.metricsServer.
    #[arg(long, default_value = "http://prometheus:9090")]
    pub prometheus: String,
    /// A file with the MetricTemplate(s) the metrics' `templateRef`s name (Canary files only).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["kubeconfig", "context", "namespace"])]
    pub template: Option<std::path::PathBuf>,
    /// A file with the Secret(s) a template's `secretRef` names (Canary files only).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["kubeconfig", "context", "namespace"])]
    pub secret: Option<std::path::PathBuf>,
    /// Provider assumed for Canaries that do not set spec.provider (the controller's --mesh-provider).
    #[arg(long, default_value = "istio")]
    pub mesh_provider: String,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Where to read the Canary from instead of a file (any of these flags selects the cluster).
    #[command(flatten)]
    pub kube: KubeArgs,
}

impl ReplayArgs {
    /// Whether `--canary` names a Canary in the cluster rather than a file.
    pub fn from_cluster(&self) -> bool {
        self.kube.kubeconfig.is_some()
            || self.kube.context.is_some()
            || self.kube.namespace.is_some()
    }
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
    /// No window was given and the Canary's status has none.
    #[error("no --{0} given and the Canary's status does not tell it ({1}); give --{0}")]
    NoWindow(&'static str, String),
    /// The files could not be read.
    #[error(transparent)]
    Files(#[from] super::query::Error),
    /// The cluster could not be used, or has no such Canary.
    #[error(transparent)]
    Cluster(#[from] plugin::Error),
    /// A MetricTemplate a metric names cannot be read from the cluster.
    #[error(
        "metric {metric:?} names MetricTemplate {namespace}/{name}, which cannot be read: {why}"
    )]
    Template {
        /// The metric of the Canary.
        metric: String,
        /// The template's namespace.
        namespace: String,
        /// The template's name.
        name: String,
        /// What the API server said.
        why: String,
    },
    /// A Secret a MetricTemplate names cannot be read from the cluster.
    #[error(
        "MetricTemplate {namespace}/{template} names Secret {namespace}/{name}, which cannot be read: {why}"
    )]
    Secret {
        /// The template (and Secret) namespace.
        namespace: String,
        /// The template's name.
        template: String,
        /// The Secret's name.
        name: String,
        /// What the API server said.
        why: String,
    },
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

/// The window to replay: the times given, else the Canary's last run as its status records it
/// (from its start to now while it runs, else to when it ended).
pub fn window(
    from: Option<&str>,
    to: Option<&str>,
    canary: &Canary,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), Error> {
    let status = canary.status.clone().unwrap_or_default();
    let running = status.phase.is_some_and(CanaryPhase::is_running);
    let from = match from {
        Some(s) => parse_time("from", s)?,
        None => status
            .run_start_time
            .as_ref()
            .filter(|_| running)
            .or(status.last_run_start_time.as_ref())
            .map(from_time)
            .ok_or_else(|| {
                Error::NoWindow(
                    "from",
                    "no status.runStartTime or status.lastRunStartTime: has it run under Serin?"
                        .into(),
                )
            })?,
    };
    let to = match to {
        Some(s) => parse_time("to", s)?,
        None if running => now,
        None => status
            .conditions
            .as_ref()
            .and_then(|c| c.iter().find(|c| c.type_ == "Promoted"))
            .filter(|_| {
                matches!(
                    status.phase,
                    Some(CanaryPhase::Failed | CanaryPhase::Succeeded)
                )
            })
            .and_then(|c| c.last_transition_time.as_ref())
            .map(from_time)
            .ok_or_else(|| {
                let phase = status.phase.map_or("none", CanaryPhase::as_str);
                Error::NoWindow(
                    "to",
                    format!("phase {phase}: no run that is going on or that ended"),
                )
            })?,
    };
    Ok((from, to))
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
            crate::cli::output::stderr_line(&format!(
                "serin replay: cannot start the runtime: {e}"
            ));
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
            crate::cli::output::stderr_line(&format!("serin replay: {e}"));
            ExitCode::from(2)
        }
    }
}

/// Replays the analysis; returns `namespace/name` and the steps.
pub async fn replay(args: &ReplayArgs) -> Result<(String, Vec<Step>), Error> {
    // Times given on the command line are checked before anything is read.
    let given = |flag, s: &Option<String>| s.as_deref().map(|s| parse_time(flag, s)).transpose();
    given("from", &args.from)?;
    given("to", &args.to)?;
    let (canary, objects, client) = if args.from_cluster() {
        let (canary, objects, client) = read_cluster(args).await?;
        (canary, objects, Some(client))
    } else {
        let (canary, objects) = read_files(args)?;
        (canary, objects, None)
    };
    let (from, to) = window(
        args.from.as_deref(),
        args.to.as_deref(),
        &canary,
        Utc::now(),
    )?;
    let id = format!(
        "{}/{}",
        canary.metadata.namespace.as_deref().unwrap_or_default(),
        canary.metadata.name.as_deref().unwrap_or_default()
    );
    let at = times(from, to, canary.spec.interval(Duration::from_secs(1)))?;
    let mut ticks = Vec::with_capacity(at.len());
    for t in at {
        let mut analyzer = Analyzer::new(objects.clone(), &args.prometheus, &args.mesh_provider)
            .map_err(|e| Error::Analyzer(e.to_string()))?
            .at(t);
        if let Some(c) = &client {
            analyzer = analyzer.with_kube(c.clone());
        }
        let report = analyzer.check(&canary).await;
        ticks.push((t, report.verdict, report.records));
    }
    Ok((id, tally(ticks, canary.spec.threshold())))
}

/// The Canary of `--canary FILE` (namespace `default` when it names none) and the objects of
/// `--template` and `--secret`.
fn read_files(args: &ReplayArgs) -> Result<(Canary, FileObjects), Error> {
    let canary = super::query::first_canary(std::path::Path::new(&args.canary))?;
    let objects = FileObjects::read(args.template.as_deref(), args.secret.as_deref())?;
    Ok((canary, objects))
}

/// The Canary `--canary NAME` from the cluster, with the MetricTemplates its metrics name and the
/// Secrets those templates name (read once: the replay makes no other request to the cluster).
async fn read_cluster(args: &ReplayArgs) -> Result<(Canary, FileObjects, kube::Client), Error> {
    let (client, namespace) = plugin::client(&args.kube).await?;
    let canary = kube::Api::<Canary>::namespaced(client.clone(), &namespace)
        .get(&args.canary)
        .await
        .map_err(|e| plugin::Error::from_kube(e, &namespace, &args.canary))?;
    let mut templates: Vec<MetricTemplate> = Vec::new();
    let mut secrets: Vec<Secret> = Vec::new();
    for metric in canary.spec.metrics() {
        let Some(r) = &metric.template_ref else {
            continue;
        };
        let ns = r
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| namespace.clone());
        let known = |t: &MetricTemplate| {
            t.metadata.name.as_deref() == Some(&r.name)
                && t.metadata.namespace.as_deref() == Some(&ns)
        };
        if templates.iter().any(known) {
            continue;
        }
        let template = kube::Api::<MetricTemplate>::namespaced(client.clone(), &ns)
            .get(&r.name)
            .await
            .map_err(|e| Error::Template {
                metric: metric.name.clone(),
                namespace: ns.clone(),
                name: r.name.clone(),
                why: why(e),
            })?;
        // The analysis reads a template's Secret from the Canary's namespace only (and reports
        // a template elsewhere that names one): only those Secrets are needed.
        if let Some(s) = template
            .spec
            .provider
            .secret_ref
            .as_ref()
            .filter(|_| ns == namespace)
            && !secrets
                .iter()
                .any(|x| x.metadata.name.as_deref() == Some(&s.name))
        {
            let secret = kube::Api::<Secret>::namespaced(client.clone(), &ns)
                .get(&s.name)
                .await
                .map_err(|e| Error::Secret {
                    namespace: ns.clone(),
                    template: r.name.clone(),
                    name: s.name.clone(),
                    why: why(e),
                })?;
            secrets.push(secret);
        }
        templates.push(template);
    }
    Ok((canary, FileObjects::new(templates, secrets), client))
}

/// What the API server said, in words (`not found` for a 404).
fn why(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 404 => "not found".into(),
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    }
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

    /// A Canary whose status is `status`.
    fn with_status(status: serde_json::Value) -> Canary {
        Canary::test().status(status).build()
    }

    fn promoted(status: &str, at: &str) -> serde_json::Value {
        serde_json::json!([{"type": "Promoted", "status": status, "reason": "x",
            "lastTransitionTime": at}])
    }

    #[test]
    fn the_window_defaults_to_the_last_run_as_the_status_records_it() {
        let now = t("2026-12-04T23:00:00Z");
        let w = |c: &Canary| window(None, None, c, now).map_err(|e| e.to_string());
        // A run going on: from its start to now.
        let running = with_status(serde_json::json!({"phase": "Progressing",
            "runStartTime": "2026-12-04T22:50:00Z", "lastRunStartTime": "2026-12-04T22:50:00Z",
            "conditions": promoted("Unknown", "2026-12-04T22:50:00Z")}));
        assert_eq!(w(&running), Ok((t("2026-12-04T22:50:00Z"), now)),);
        // A run that failed: from its start to the Promoted condition's transition.
        let failed = with_status(serde_json::json!({"phase": "Failed",
            "lastRunStartTime": "2026-12-04T22:40:00Z",
            "lastTransitionTime": "2026-12-04T22:58:00Z",
            "conditions": promoted("False", "2026-12-04T22:45:30Z")}));
        assert_eq!(
            w(&failed),
            Ok((t("2026-12-04T22:40:00Z"), t("2026-12-04T22:45:30Z"))),
        );
        // Times given win over the status, each on its own.
        assert_eq!(
            window(Some("2026-12-04T22:41:00Z"), None, &failed, now).map_err(|e| e.to_string()),
            Ok((t("2026-12-04T22:41:00Z"), t("2026-12-04T22:45:30Z"))),
        );
        // A Canary that never ran under Serin, or that is only initialised: no window.
        let never = with_status(serde_json::json!({"phase": "Initialized",
            "conditions": promoted("True", "2026-12-04T22:00:00Z")}));
        assert_eq!(
            w(&never),
            Err("no --from given and the Canary's status does not tell it (no \
                 status.runStartTime or status.lastRunStartTime: has it run under Serin?); give --from"
                .into()),
        );
        assert_eq!(
            window(Some("2026-12-04T22:41:00Z"), None, &never, now).map_err(|e| e.to_string()),
            Err(
                "no --to given and the Canary's status does not tell it (phase Initialized: no \
                 run that is going on or that ended); give --to"
                    .into()
            ),
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
