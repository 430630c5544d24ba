//! `serin crds`: prints the generated CRD YAML (stdout only).
use clap::Args;
use std::process::ExitCode;

/// Arguments of `serin crds`.
#[derive(Debug, Args)]
pub struct CrdsArgs {}

/// Runs `serin crds`.
pub fn run(_args: CrdsArgs) -> ExitCode {
    match crate::api::crd::to_yaml() {
        Ok(yaml) => super::output::finish(
            "serin crds",
            super::output::write_stdout(&yaml),
            ExitCode::SUCCESS,
        ),
        Err(e) => {
            crate::cli::output::stderr_line(&format!("serin crds: cannot render YAML: {e}"));
            ExitCode::FAILURE
        }
    }
}
