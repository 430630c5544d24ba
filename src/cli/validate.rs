//! `serin validate`: lints manifests from files, directories or stdin (file I/O, stdout).
use clap::{Args, ValueEnum};
use serde::Deserialize;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::api::manifest::{self, ObjectReport};
use crate::api::validation::{Severity, ValidationContext};

/// Arguments of `serin validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Files or directories (searched recursively for *.yaml and *.yml); `-` reads stdin.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Provider assumed for Canaries that do not set spec.provider (the controller's --mesh-provider).
    #[arg(long, default_value = "istio")]
    pub mesh_provider: String,
    /// The controller's minimum analysis interval, in seconds (shorter intervals get a warning).
    #[arg(long, default_value_t = 10)]
    pub min_interval: u64,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// One line per problem: `file:document: kind/name: field.path: message`.
    Text,
    /// A JSON document with every object and problem.
    Json,
}

/// One finding with its location, as printed.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// File name (`-` for stdin).
    pub file: String,
    /// 1-based document number within the file.
    pub document: usize,
    /// `Kind/name`, empty when the document could not be read.
    pub object: String,
    /// Error or warning.
    pub severity: Severity,
    /// Dotted field path.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl Finding {
    /// The text line: `file:document: kind/name: field.path: message`, with `warning: ` before the
    /// message of warnings.
    pub fn line(&self) -> String {
        let sev = if self.severity == Severity::Warning {
            "warning: "
        } else {
            ""
        };
        if self.object.is_empty() {
            format!(
                "{}:{}: {}: {sev}{}",
                self.file, self.document, self.path, self.message
            )
        } else {
            format!(
                "{}:{}: {}: {}: {sev}{}",
                self.file, self.document, self.object, self.path, self.message
            )
        }
    }
}

/// The result of linting a set of inputs.
#[derive(Debug, Default)]
pub struct Summary {
    /// Files read.
    pub files: usize,
    /// YAML documents found (empty documents not counted).
    pub documents: usize,
    /// Objects of our kinds checked.
    pub objects: Vec<(String, usize, ObjectReport)>,
    /// All findings, in input order.
    pub findings: Vec<Finding>,
}

impl Summary {
    /// Number of errors.
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }
    /// The exit code: 1 on any error, 2 when there was nothing to check (no YAML document in
    /// any input: an empty directory, empty files), else 0.
    pub fn exit_code(&self) -> ExitCode {
        if self.errors() > 0 {
            ExitCode::FAILURE
        } else if self.documents == 0 {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        }
    }
    /// Number of warnings.
    pub fn warnings(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .count()
    }
}

/// Lints YAML text holding one or more documents; `file` names it in findings.
pub fn lint_text(file: &str, text: &str, ctx: &ValidationContext, summary: &mut Summary) {
    summary.files += 1;
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let value = match Value::deserialize(doc) {
            Ok(v) => v,
            Err(e) => {
                summary.findings.push(Finding {
                    file: file.to_string(),
                    document,
                    object: String::new(),
                    severity: Severity::Error,
                    path: "yaml".into(),
                    message: format!("cannot parse: {e}"),
                });
                // The YAML stream cannot be resynchronised after a syntax error.
                break;
            }
        };
        if value.is_null() {
            // An empty document (`---` alone, only comments) holds nothing to check.
            continue;
        }
        summary.documents += 1;
        let items: Vec<&Value> = if value.get("kind").and_then(Value::as_str) == Some("List") {
            value
                .get("items")
                .and_then(Value::as_array)
                .map(|a| a.iter().collect())
                .unwrap_or_default()
        } else {
            vec![&value]
        };
        for item in items {
            let Some(report) = manifest::lint(item, ctx) else {
                continue;
            };
            let object = format!("{}/{}", report.kind, report.name);
            for p in &report.problems {
                summary.findings.push(Finding {
                    file: file.to_string(),
                    document,
                    object: object.clone(),
                    severity: p.severity,
                    path: p.path.clone(),
                    message: p.message.clone(),
                });
            }
            summary.objects.push((file.to_string(), document, report));
        }
    }
}

/// Expands the command-line paths into YAML files (sorted within each directory).
fn collect(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            if entry.is_dir() {
                collect(&entry, out)?;
            } else if entry.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(entry);
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// Lints every input and returns the summary; I/O problems become findings.
pub fn lint_paths(paths: &[String], ctx: &ValidationContext) -> Summary {
    let mut summary = Summary::default();
    for p in paths {
        if p == "-" {
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => lint_text("-", &text, ctx, &mut summary),
                Err(e) => io_finding(&mut summary, "-", &e),
            }
            continue;
        }
        let mut files = Vec::new();
        if let Err(e) = collect(Path::new(p), &mut files) {
            io_finding(&mut summary, p, &e);
            continue;
        }
        for f in files {
            let name = f.display().to_string();
            match std::fs::read_to_string(&f) {
                Ok(text) => lint_text(&name, &text, ctx, &mut summary),
                Err(e) => io_finding(&mut summary, &name, &e),
            }
        }
    }
    summary
}

fn io_finding(summary: &mut Summary, file: &str, e: &std::io::Error) {
    summary.findings.push(Finding {
        file: file.to_string(),
        document: 0,
        object: String::new(),
        severity: Severity::Error,
        path: "file".into(),
        message: format!("cannot read: {e}"),
    });
}

/// Runs `serin validate`: exit 1 on any error, 2 when the inputs hold no YAML document at all
/// (an empty directory, empty files), 0 when there are only warnings or none.
pub fn run(args: ValidateArgs) -> ExitCode {
    let ctx = ValidationContext {
        default_provider: args.mesh_provider.clone(),
        min_interval: std::time::Duration::from_secs(args.min_interval),
    };
    let summary = lint_paths(&args.paths, &ctx);
    let written = match args.output {
        Output::Text => {
            let text: String = summary
                .findings
                .iter()
                .map(|f| format!("{}\n", f.line()))
                .collect();
            let written = super::output::write_stdout(&text);
            if written.is_ok() {
                let _ = writeln!(
                    std::io::stderr(),
                    "{} file(s), {} document(s), {} object(s): {} error(s), {} warning(s)",
                    summary.files,
                    summary.documents,
                    summary.objects.len(),
                    summary.errors(),
                    summary.warnings()
                );
            }
            written
        }
        Output::Json => {
            let findings: Vec<Value> = summary
                .findings
                .iter()
                .map(|f| {
                    json!({
                        "file": f.file, "document": f.document, "object": f.object,
                        "severity": f.severity.to_string(), "path": f.path, "message": f.message,
                    })
                })
                .collect();
            let doc = json!({
                "files": summary.files,
                "documents": summary.documents,
                "objects": summary.objects.len(),
                "errors": summary.errors(),
                "warnings": summary.warnings(),
                "findings": findings,
            });
            let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
            super::output::write_stdout(&format!("{text}\n"))
        }
    };
    if written.is_ok() && summary.documents == 0 && summary.errors() == 0 {
        let _ = writeln!(
            std::io::stderr(),
            "serin validate: nothing to check: no YAML document in {} (exit 2)",
            args.paths.join(" ")
        );
    }
    super::output::finish("serin validate", written, summary.exit_code())
}
