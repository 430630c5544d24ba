//! `serin demo`: runs the demo scenarios on the embedded cluster (see `crate::demo`).
use clap::Args;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::demo::{self, Options, Scenario};

/// Arguments of `serin demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Which scenarios to run.
    #[arg(long, value_enum, default_value_t = Scenario::All)]
    pub scenario: Scenario,
    /// One plain log line per change instead of the live view (the default without a terminal).
    #[arg(long)]
    pub plain: bool,
    /// Leave the cluster, controller, gateway, load and Prometheus running at the end and print
    /// how to reach them.
    #[arg(long)]
    pub keep_running: bool,
    /// The Prometheus binary (default: $PROMETHEUS, `prometheus` on the PATH, /usr/bin/prometheus).
    #[arg(long)]
    pub prometheus: Option<PathBuf>,
    /// Requests per second sent through the gateway.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=2000))]
    pub rps: u32,
}

/// Runs `serin demo`; exits 1 when a scenario does not end as the story says, 2 on errors.
pub fn run(args: DemoArgs) -> ExitCode {
    let serin_binary = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            crate::cli::output::stderr_line(&format!(
                "serin demo: cannot find the serin binary to run the controller: {e}"
            ));
            return ExitCode::from(2);
        }
    };
    let plain = args.plain || !std::io::stdout().is_terminal();
    let opts = Options {
        scenario: args.scenario,
        plain,
        colour: !plain && super::output::stdout_colour(),
        keep_running: args.keep_running,
        prometheus: args.prometheus,
        rps: args.rps,
        serin_binary,
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            crate::cli::output::stderr_line(&format!("serin demo: starting the runtime: {e}"));
            return ExitCode::from(2);
        }
    };
    match rt.block_on(demo::run(opts)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        // The reader has gone (`serin demo | head`); everything was stopped (`cli::output`).
        Err(demo::Error::OutputClosed) => ExitCode::SUCCESS,
        Err(e) => {
            crate::cli::output::stderr_line(&format!("serin demo: {e}"));
            ExitCode::from(2)
        }
    }
}
