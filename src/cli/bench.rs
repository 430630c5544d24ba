//! `serin bench`: measures the controller at N canaries on the embedded cluster and prints a
//! table or JSON (process, network and file I/O).
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::bench::{self, BenchProvider, Options, Report};
use crate::core::text::error_chain;

/// Arguments of `serin bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Canary counts, one run each.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    pub canaries: Vec<usize>,
    /// The analysis interval of every canary (`2s`, `500ms`).
    #[arg(long, default_value = "2s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Traffic steps per rollout: iterations for blue/green (`kubernetes`), weight increases for
    /// `gatewayapi:v1`.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub steps: u32,
    /// The traffic provider of the canaries.
    #[arg(long, value_enum, default_value_t = BenchProvider::Kubernetes)]
    pub provider: BenchProvider,
    /// Output format: `table` or `json`.
    #[arg(short = 'o', long, default_value = "table", value_parser = ["table", "json"])]
    pub output: String,
    /// An earlier `-o json` run: print each figure's ratio to it.
    #[arg(long)]
    pub compare: Option<PathBuf>,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = crate::api::duration::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_millis(100) {
        return Err(format!("interval {s} is shorter than 100ms"));
    }
    Ok(d)
}

/// Runs `serin bench`.
pub fn run(args: BenchArgs) -> ExitCode {
    if args.canaries.is_empty() || args.canaries.contains(&0) {
        crate::cli::output::stderr_line("serin bench: --canaries needs counts above zero");
        return ExitCode::from(2);
    }
    let before: Option<Report> = match &args.compare {
        None => None,
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        {
            Ok(r) => Some(r),
            Err(e) => {
                crate::cli::output::stderr_line(&format!(
                    "serin bench: --compare {}: {e}",
                    path.display()
                ));
                return ExitCode::from(2);
            }
        },
    };
    let controller_exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            crate::cli::output::stderr_line(&format!(
                "serin bench: cannot find the serin binary: {e}"
            ));
            return ExitCode::FAILURE;
        }
    };
    let opts = Options {
        sizes: args.canaries,
        interval: args.interval,
        steps: args.steps,
        provider: args.provider,
        controller_exe,
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            crate::cli::output::stderr_line(&format!("serin bench: starting the runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let progress = |line: &str| crate::cli::output::stderr_line(&format!("serin bench: {line}"));
    let report = match rt.block_on(bench::run(&opts, &progress)) {
        Ok(r) => r,
        Err(e) => {
            crate::cli::output::stderr_line(&format!("serin bench: {}", error_chain(&e)));
            return ExitCode::FAILURE;
        }
    };
    if args.output == "json" {
        match serde_json::to_string_pretty(&report) {
            Ok(j) => println!("{j}"),
            Err(e) => {
                crate::cli::output::stderr_line(&format!("serin bench: encoding the report: {e}"));
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", bench::table(&report));
    }
    if let Some(before) = &before {
        let text = bench::compare(&report, before);
        if args.output == "json" {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    }
    ExitCode::SUCCESS
}
