//! `serin loadtester`: a drop-in for flagger-loadtester (network and process I/O).
use clap::Args;
use std::process::ExitCode;

use crate::loadtester::{Config, LoadTester, TaskType};

/// Arguments of `serin loadtester`. Flagger's single-dash spellings (`-port`) work too.
#[derive(Debug, Args)]
pub struct LoadtesterArgs {
    /// Port to listen on.
    #[arg(long, default_value_t = 9090)]
    pub port: u16,
    /// Longest a task may run before it is killed (Go duration, e.g. 1h, 90s).
    #[arg(long, default_value = "1h")]
    pub timeout: String,
    /// Log the output of every command.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub log_cmd_output: bool,
    /// Task types accepted (comma list of cmd, bash, helm, kubectl). `bash` is off by default:
    /// it runs arbitrary scripts sent by anyone who can reach the service.
    #[arg(long, default_value = "cmd,helm,kubectl", value_delimiter = ',')]
    pub enable_types: Vec<String>,
    /// Only payloads whose namespace matches are served (others get 403).
    #[arg(long)]
    pub namespace_regexp: Option<String>,
    /// Log level (trace, debug, info, warn, error).
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

/// Runs `serin loadtester`.
pub fn run(args: LoadtesterArgs) -> ExitCode {
    super::controller::init_logging(&args.log_level, super::controller::LogFormat::Text);
    let config = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            crate::cli::output::stderr_line(&format!("serin loadtester: {e}"));
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            crate::cli::output::stderr_line(&format!(
                "serin loadtester: cannot start the runtime: {e}"
            ));
            return ExitCode::FAILURE;
        }
    };
    let addr = std::net::SocketAddr::from(([0, 0, 0, 0], args.port));
    match rt.block_on(crate::loadtester::serve(addr, LoadTester::new(config))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            crate::cli::output::stderr_line(&format!("serin loadtester: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// Builds the load tester's settings from its flags.
pub fn config(args: &LoadtesterArgs) -> Result<Config, String> {
    let timeout = crate::api::duration::parse_duration(&args.timeout)
        .map_err(|e| format!("--timeout: {e}"))?;
    let mut enabled = std::collections::BTreeSet::new();
    for t in args.enable_types.iter().filter(|t| !t.is_empty()) {
        let typ = TaskType::parse(t).ok_or_else(|| {
            format!("--enable-types: unknown task type {t:?} (cmd, bash, helm, kubectl)")
        })?;
        enabled.insert(typ);
    }
    let namespace_regexp = args
        .namespace_regexp
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .map_err(|e| format!("--namespace-regexp: {e}"))?;
    Ok(Config {
        timeout,
        log_cmd_output: args.log_cmd_output,
        enabled,
        namespace_regexp,
    })
}
