//! `serin cluster`: starts the embedded API server and writes a kubeconfig (network I/O).
use clap::Args;
use std::process::ExitCode;

/// Arguments of `serin cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {}

/// Runs `serin cluster`.
pub fn run(_args: ClusterArgs) -> ExitCode {
    eprintln!("serin cluster: not built yet");
    ExitCode::FAILURE
}
