//! The `serin` binary: parses arguments and hands over to the library.
use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = serin::cli::controller::normalize_flagger_flags(std::env::args());
    let cli = serin::cli::Cli::parse_from(args);
    serin::cli::run(cli)
}
