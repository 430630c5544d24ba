//! The `serin` binary: parses arguments and hands over to the library.
fn main() -> std::process::ExitCode {
    let args = serin::cli::controller::normalize_flagger_flags(std::env::args());
    let cli = serin::cli::parse(args);
    serin::cli::run(cli)
}
