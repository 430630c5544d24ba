//! `serin validate`: lints manifests from files, directories or stdin (file I/O).
use clap::Args;
use std::process::ExitCode;

/// Arguments of `serin validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {}

/// Runs `serin validate`.
pub fn run(_args: ValidateArgs) -> ExitCode {
    ExitCode::FAILURE
}
