//! The `serin` binary: parses arguments and hands over to the library.
use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = serin::cli::Cli::parse();
    serin::cli::run(cli)
}
