//! `serin crds`: prints the generated CRD YAML (stdout only).
use clap::Args;
use std::process::ExitCode;

/// Arguments of `serin crds`.
#[derive(Debug, Args)]
pub struct CrdsArgs {}

/// Runs `serin crds`.
pub fn run(_args: CrdsArgs) -> ExitCode {
    ExitCode::FAILURE
}
