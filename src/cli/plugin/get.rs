//! `serin get [-A] [-n NS]`: a table of Canaries with their phase, weight, failed checks,
//! iteration, last check and age (API I/O; the table is rendered by pure functions).
use chrono::{DateTime, Utc};
use kube::api::{Api, ListParams};
use std::fmt::Write;
use std::process::ExitCode;

use super::{Error, KubeArgs};
use crate::api::Canary;
use crate::api::canary::CheckRecord;

/// `serin get` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct GetArgs {
    /// The kube flags.
    #[command(flatten)]
    pub kube: KubeArgs,
    /// List the Canaries of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

/// One table row.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Phase, with ` (paused)` while a pause request holds the run.
    pub phase: String,
    /// Canary weight.
    pub weight: i32,
    /// `failed/threshold`.
    pub failed: String,
    /// Completed iterations.
    pub iteration: i32,
    /// `<check> <outcome> <value>`, or `-`.
    pub last_check: String,
    /// Since creation.
    pub age: String,
}

impl Row {
    /// The row of one Canary at `now`.
    pub fn of(c: &Canary, now: DateTime<Utc>) -> Row {
        let status = c.status.clone().unwrap_or_default();
        let mut phase = status
            .phase
            .map_or_else(|| "-".to_string(), |p| p.as_str().to_string());
        if status.paused_at.is_some() {
            phase.push_str(" (paused)");
        }
        let ready = status
            .conditions
            .as_ref()
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
        if let Some(r) = ready.filter(|r| r.status == "False") {
            phase = format!("{phase} ({})", r.reason);
        }
        Row {
            namespace: c.metadata.namespace.clone().unwrap_or_default(),
            name: c.metadata.name.clone().unwrap_or_default(),
            phase,
            weight: status.canary_weight,
            failed: format!("{}/{}", status.failed_checks, c.spec.threshold()),
            iteration: status.iterations,
            last_check: last_check(status.checks.as_deref().unwrap_or_default()),
            age: c.metadata.creation_timestamp.as_ref().map_or_else(
                || "-".into(),
                |t| super::age(now - crate::api::time::from_time(t)),
            ),
        }
    }
}

/// The check a reader wants first: the first one that did not pass, else the last one.
pub fn last_check(records: &[CheckRecord]) -> String {
    let pick = records
        .iter()
        .find(|r| r.outcome != "Pass")
        .or_else(|| records.last());
    match pick {
        None => "-".into(),
        Some(r) => {
            let value = r.value.map_or_else(|| "-".to_string(), format_value);
            format!("{} {} {value}", r.name, r.outcome)
        }
    }
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e12 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// The table, columns padded to their widest cell; `NAMESPACE` only with `all_namespaces`.
pub fn table(rows: &[Row], all_namespaces: bool) -> String {
    let mut cells: Vec<Vec<String>> = vec![
        [
            "NAMESPACE",
            "NAME",
            "PHASE",
            "WEIGHT",
            "FAILED",
            "ITERATION",
            "LAST CHECK",
            "AGE",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    ];
    for r in rows {
        cells.push(vec![
            r.namespace.clone(),
            r.name.clone(),
            r.phase.clone(),
            r.weight.to_string(),
            r.failed.clone(),
            r.iteration.to_string(),
            r.last_check.clone(),
            r.age.clone(),
        ]);
    }
    let skip = usize::from(!all_namespaces);
    let widths: Vec<usize> = (0..8)
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .skip(skip)
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        let _ = writeln!(out, "{}", line.join("   ").trim_end());
    }
    out
}

/// Runs `serin get`.
pub fn run(args: GetArgs) -> ExitCode {
    super::block_on(async move {
        let (client, namespace) = super::client(&args.kube).await?;
        let api: Api<Canary> = if args.all_namespaces {
            Api::all(client)
        } else {
            Api::namespaced(client, &namespace)
        };
        let mut list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| match e {
                kube::Error::Api(s) if s.code == 404 => Error::Refused(
                    "the flagger.app CRDs are not installed (serin crds | kubectl apply -f -)"
                        .into(),
                ),
                e => Error::from_kube(e, &namespace, ""),
            })?
            .items;
        if list.is_empty() {
            if args.all_namespaces {
                crate::cli::output::stderr_line("No canaries found.");
            } else {
                crate::cli::output::stderr_line(&format!(
                    "No canaries found in namespace {namespace}."
                ));
            }
            return Ok(());
        }
        list.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        let now = Utc::now();
        let rows: Vec<Row> = list.iter().map(|c| Row::of(c, now)).collect();
        super::out(&table(&rows, args.all_namespaces))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, outcome: &str, value: Option<f64>) -> CheckRecord {
        CheckRecord {
            name: name.into(),
            outcome: outcome.into(),
            value,
            ..Default::default()
        }
    }

    #[test]
    fn the_last_check_shows_a_failing_one_first() {
        let records = [
            record("request-success-rate", "Pass", Some(99.5)),
            record("latency", "Fail", Some(812.0)),
        ];
        assert_eq!(last_check(&records), "latency Fail 812");
        assert_eq!(last_check(&records[..1]), "request-success-rate Pass 99.50");
        assert_eq!(last_check(&[record("x", "NoData", None)]), "x NoData -");
        assert_eq!(last_check(&[]), "-");
    }

    #[test]
    fn the_namespace_column_appears_only_for_all_namespaces() {
        let row = Row {
            namespace: "shop".into(),
            name: "podinfo".into(),
            phase: "Progressing (paused)".into(),
            weight: 20,
            failed: "0/2".into(),
            iteration: 0,
            last_check: "-".into(),
            age: "5m".into(),
        };
        let one = table(std::slice::from_ref(&row), false);
        assert!(one.starts_with("NAME "), "{one}");
        assert!(!one.contains("shop"));
        let all = table(&[row], true);
        let lines: Vec<&str> = all.lines().collect();
        assert!(lines[0].starts_with("NAMESPACE   NAME "), "{all}");
        assert!(lines[1].starts_with("shop        podinfo "), "{all}");
        // Every column starts at the same offset in the header and the row.
        let col = |l: &str, w: &str| l.find(w);
        assert_eq!(col(lines[0], "WEIGHT"), col(lines[1], "20 "));
    }
}
